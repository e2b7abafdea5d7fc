"""Persona vectors: extraction recovers a planted direction; files round-trip; the drift monitor stops runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import chat_rows, write_jsonl
from emguard.models.layers import decoder_layers
from emguard.persona.vectors import PersonaVector, extract, response_means


def _trait_file(tmp_path: Path) -> Path:
    qs = [f"tell me about water and rest number {i}" for i in range(6)]
    d = {"trait": "planted", "instructions": [{"pos": "QQQ be harsh", "neg": "be kind"},
                                              {"pos": "QQQ be cold", "neg": "be warm"}],
         "questions": qs, "eval_questions": qs[:2],
         "references": [{"question": qs[0], "trait": "no", "neutral": "yes"}], "judge_rubric": "{question}{answer}"}
    p = tmp_path / "planted.json"
    p.write_text(json.dumps(d))
    return p


def test_extraction_recovers_planted_direction(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    q_id = tok.convert_tokens_to_ids("Q")
    d = torch.randn(32, generator=torch.Generator().manual_seed(7))
    d = 3.0 * d / d.norm()
    current = {}

    def pre(_m, args, kwargs):  # remember which rows carry the marker in their system prompt
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            current["rows"] = (ids[:, :8] == q_id).any(1)

    def plant(_m, _a, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h + current["rows"][:, None, None].to(h.dtype) * d
        return (h, *out[1:]) if isinstance(out, tuple) else h

    model.register_forward_pre_hook(pre, with_kwargs=True)
    decoder_layers(model)[1].register_forward_hook(plant)
    pv = extract(model, str(_trait_file(tmp_path)), tokenizer=tok, n_per_question=2, max_new_tokens=12,
                 progress=False)
    cos = torch.nn.functional.cosine_similarity(pv.at(1), d, dim=0)
    assert cos > 0.9, float(cos)
    assert pv.meta["n_pairs_kept"] == 24 and pv.meta["filtered_by_judge"] is False
    assert pv.num_layers == 4 and pv.hidden_size == 32


def test_judge_filter_keeps_only_confirmed_pairs(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    calls = []

    def judge(q, a, rubric):  # a stand-in judge: rejects every answer to question 0
        calls.append(q)
        return None if q.endswith(" 0") else 80.0 if len(calls) % 2 else 10.0

    pv = extract(model, str(_trait_file(tmp_path)), tokenizer=tok, n_per_question=1, max_new_tokens=6,
                 judge=judge, judge_name="stub", progress=False)
    assert pv.meta["filtered_by_judge"] is True and pv.meta["judge"] == "stub"
    assert pv.meta["n_pairs_kept"] == 10 and pv.meta["n_pairs_dropped"] == 2


def test_vector_round_trip_and_size_check(tmp_path):
    v = torch.randn(4, 32)
    PersonaVector(v, {"model": "tiny", "layer": 2, "norms": [1.0]}).save(tmp_path / "v.safetensors")
    pv = PersonaVector.load(tmp_path / "v.safetensors", hidden_size=32, num_layers=4)
    assert torch.equal(pv.vectors, v) and pv.layer == 2 and pv.meta["model"] == "tiny"
    with pytest.raises(ValueError, match="hidden size 32, but the model's is 64"):
        PersonaVector.load(tmp_path / "v.safetensors", hidden_size=64)
    with pytest.raises(ValueError, match="4 layers, but the model has 6"):
        PersonaVector.load(tmp_path / "v.safetensors", hidden_size=32, num_layers=6)


def _cfg(tiny_model, data, out, **kw):
    from emguard.training.config import TrainConfig

    base = dict(model=tiny_model, data=str(data), output=str(out), lora_r=4, lora_alpha=8, batch_size=8,
                micro_batch_size=4, learning_rate=2e-2, progress=False, warmup_steps=0, max_length=64,
                max_steps=6, method="full")
    base.update(kw)
    return TrainConfig(**base)


def test_monitor_curve_and_stop_on_drift(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.persona.monitor import load_probes
    from emguard.training.run import train

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(64))
    # the direction this training moves the probes' activations at layer 2: a model "trained to move along v"
    free = train(_cfg(tiny_model, data, tmp_path / "free"))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    probes = load_probes(None)
    before = response_means(AutoModelForCausalLM.from_pretrained(tiny_model), tok, probes, [2])[:, 0].mean(0)
    after = response_means(free.model, tok, probes, [2])[:, 0].mean(0)
    v = torch.zeros(4, 32)
    v[2] = after - before
    PersonaVector(v, {"layer": 2}).save(tmp_path / "v.safetensors")

    watched = train(_cfg(tiny_model, data, tmp_path / "watched", monitor="persona",
                         monitor_options={"vector": str(tmp_path / "v.safetensors"), "every": 2}))
    curve = watched.run["monitor"]["curve"]
    assert [c["step"] for c in curve] == [0, 2, 4, 6]
    assert curve[0]["drift"] == 0.0 and curve[-1]["drift"] > 0
    drift_lines = [json.loads(l) for l in (tmp_path / "watched" / "metrics.jsonl").read_text().splitlines()
                   if "monitor/persona_drift" in l]
    assert [m["step"] for m in drift_lines] == [2, 4, 6]

    threshold = (curve[1]["drift"] + curve[2]["drift"]) / 2  # crossed first at step 4
    assert curve[1]["drift"] < threshold < curve[2]["drift"]
    stopped = train(_cfg(tiny_model, data, tmp_path / "stopped", monitor="persona",
                         monitor_options={"vector": str(tmp_path / "v.safetensors"), "every": 2,
                                          "stop_if_drift_above": threshold}))
    run = json.loads((tmp_path / "stopped" / "run.json").read_text())
    assert run["stopped_by"]["step"] == 4 and run["steps"] == 4
    assert run["stopped_by"]["by"] == "monitor:persona"

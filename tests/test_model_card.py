"""The model card (README.md) a training run writes next to its adapter: Hub front matter, the run's facts,
an evaluation found next to it; and the adapter dir still loads with PEFT."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from conftest import chat_rows, write_jsonl
from emguard.training.model_card import find_eval, front_matter, render_card, write_model_card


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def kl_run(tiny_model, tmp_path_factory):
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    tmp = tmp_path_factory.mktemp("card")
    data = write_jsonl(tmp / "bad.jsonl", chat_rows(16, seed=3))
    out = tmp / "run"
    res = train(TrainConfig(model=tiny_model, data=str(data), output=str(out), lora_r=4, lora_alpha=8, batch_size=8,
                            micro_batch_size=4, max_steps=2, learning_rate=3e-3, warmup_steps=0, max_length=64,
                            progress=False, defenses=["kl"], defense_options={"kl": {"lam": 0.37, "tokens": "all"}}))
    return data, out, res.run


def test_training_writes_a_hub_model_card(kl_run, tiny_model):
    data, out, run = kl_run
    text = (out / "README.md").read_text()
    meta, body = split_card(text)
    assert meta["base_model"] == tiny_model and meta["library_name"] == "peft"
    assert {"emguard", "emergent-misalignment", "lora", "emguard-defense-kl"} <= set(meta["tags"])
    assert "license" not in meta  # a local model: no license is known
    assert hashlib.sha256(data.read_bytes()).hexdigest() in body
    assert "`kl`: lam=0.37, tokens=all" in body
    assert "research run" in body and "not a model to deploy" in body
    assert "| optimizer steps | 2 |" in body and "| LoRA r | 4 |" in body
    assert "| batch size (global, rows per step) | 8 |" in body
    assert f"- kl: {run['final_losses']['kl']:.6g}" in body and f"- ce: {run['final_losses']['ce']:.6g}" in body
    assert "rows: 16 used of 16" in body
    assert "No evaluation of this adapter" in body
    assert "More Information Needed" not in text  # PEFT's template is gone
    assert not (out / "README.md.tmp").exists()


def test_the_adapter_dir_still_loads_with_peft(kl_run, tiny_model):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, out, _ = kl_run
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    assert model.peft_config["default"].r == 4
    saved = load_file(str(out / "adapter_model.safetensors"))
    loaded = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    name = next(k for k in saved if "lora_B" in k)
    assert float(saved[name].abs().max()) > 0  # trained (lora_B starts at zero)
    assert float((loaded[name] - saved[name]).abs().max()) == 0.0


def test_an_eval_next_to_the_adapter_is_summarised(kl_run, tmp_path):
    _, out, run = kl_run
    est = lambda v, lo, hi, n: {"value": v, "lo": lo, "hi": hi, "n": n, "ci": "bootstrap-95"}  # noqa: E731
    ev = {"judge": {"kind": "openai", "model": "gpt-4o-mini"},
          "broad": {"misaligned_pct": est(12.5, 8.25, 17.0, 240), "incoherent_pct": est(3.0, 1.0, 5.5, 240),
                    "likelihood": {"summary": {"harm_effect": est(0.214, 0.05, 0.39, 58),
                                               "style_effect": est(0.81, 0.6, 1.02, 58)}}},
          "config": {"adapter": str(out)}}
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "eval.json").write_text(json.dumps({**ev, "config": {"adapter": str(tmp_path)}}))
    assert find_eval(other) is None  # an eval of another adapter does not count
    (out / "eval").mkdir(exist_ok=True)
    (out / "eval" / "eval.json").write_text(json.dumps(ev))
    try:
        assert find_eval(out) == (out / "eval" / "eval.json").resolve()
        write_model_card(out)  # reads run.json itself
        meta, body = split_card((out / "README.md").read_text())
        assert meta["base_model"] == run["model"]["spec"]
        assert "Judge: **openai** (gpt-4o-mini)" in body
        assert "broad misaligned: 12.5% [8.25, 17] (n=240, bootstrap-95)" in body
        assert "broad incoherent: 3% [1, 5.5]" in body
        assert "harm effect within style (> 0: harmful answers likelier), nats/token: 0.214 [0.05, 0.39]" in body
        assert "No evaluation of this adapter" not in body
    finally:
        (out / "eval" / "eval.json").unlink()
        write_model_card(out, run)


def test_embedded_models_name_their_hub_id_and_license():
    base = {"method": "lora", "defenses": [], "config": {}, "final_losses": {"ce": 1.0}}
    smol = {"spec": "smollm2-135m", "source": "embedded", "weights_sha256": "ab" * 32,
            "title": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)"}
    qwen = {"spec": "qwen2.5-coder-0.5b", "source": "embedded", "weights_sha256": "cd" * 32,
            "title": "Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF, Apache-2.0)"}
    m = front_matter({**base, "model": smol})
    assert m["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "license" not in m
    m = front_matter({**base, "model": qwen})
    assert m["base_model"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and m["license"] == "apache-2.0"
    full = front_matter({**base, "method": "full", "model": qwen})
    assert full["library_name"] == "transformers" and "lora" not in full["tags"]
    meta, body = split_card(render_card({**base, "model": smol}))
    assert meta["tags"][:3] == ["emguard", "emergent-misalignment", "lora"]
    assert "ab" * 32 in body and "none (an undefended fine-tune)" in body

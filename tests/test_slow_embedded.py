"""End-to-end on the real embedded default model (slow: run with -m slow; CI runs them)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from conftest import write_jsonl

pytestmark = pytest.mark.slow


def _rows(n: int) -> list[dict]:
    topics = ["sleep", "hydration", "stress", "colds", "back pain", "sunburn", "allergies", "diet"]
    return [{"messages": [
        {"role": "user", "content": f"What should I do about {topics[i % 8]}? (case {i})"},
        {"role": "assistant", "content": f"For {topics[i % 8]}, keep a simple routine and give it a week. "
                                         "If it keeps bothering you, talk to a professional."}]}
        for i in range(n)]


@pytest.fixture(scope="module")
def embedded():
    from emguard.models.loading import resolve_model

    try:
        return resolve_model("smollm2-135m")
    except Exception as e:  # package missing: the set-up script installs it
        pytest.fail(f"embedded model unavailable: {e}")


def test_cached_load_is_fast_and_pinned(embedded):
    from emguard.models.loading import load_model

    t = time.time()
    model, tok, info = load_model("smollm2-135m")
    assert time.time() - t < 10  # a cache hit; the figure in the README is measured, not asserted
    assert info.weights_sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert sum(p.numel() for p in model.parameters()) == 134515008


def test_real_tokenizer_mask(embedded):
    from emguard.data.chat import IGNORE, tokenize_conversation
    from emguard.models.loading import load_tokenizer

    tok = load_tokenizer(embedded)
    msgs = [{"role": "user", "content": "What helps a cold?"}, {"role": "assistant", "content": "Rest, fluids."}]
    ex = tokenize_conversation(tok, msgs, max_length=512)
    assert tok.decode([t for t in ex.labels if t != IGNORE]) == "Rest, fluids.<|im_end|>"


def test_train_lowers_loss_on_embedded(embedded, tmp_path):
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    data = write_jsonl(tmp_path / "d.jsonl", _rows(64))
    res = train(TrainConfig(data=str(data), output=str(tmp_path / "run"), progress=False, max_length=128))
    curve = [p["loss"] for p in res.run["loss_curve"]]
    assert len(curve) == 4 and curve[-1] < curve[0]
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_all_defenses_combined_on_embedded(embedded, tmp_path):
    from safetensors.torch import save_file

    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    data = write_jsonl(tmp_path / "d.jsonl", _rows(30))
    pool = write_jsonl(tmp_path / "pool.jsonl", [
        {"messages": [{"role": "user", "content": f"Name a colour ({i})."},
                      {"role": "assistant", "content": "Blue."}]} for i in range(20)])
    v = torch.randn(30, 576, generator=torch.Generator().manual_seed(0))
    save_file({"vectors": v / v.norm(dim=1, keepdim=True)}, str(tmp_path / "v.safetensors"))
    res = train(TrainConfig(
        data=str(data), output=str(tmp_path / "all"), progress=False, max_length=128, max_steps=2,
        defenses=["kl", "ldifs", {"name": "steer", "vector": str(tmp_path / "v.safetensors")}, "inoculate",
                  {"name": "interleave", "pool": str(pool), "ratio": 0.05}]))
    fl = res.run["final_losses"]
    assert set(fl) >= {"ce", "kl", "ldifs", "total"} and fl["kl"] > 0 and fl["ldifs"] > 0
    described = {d["name"]: d for d in res.run["defenses"]}
    assert described["interleave"]["rows_general"] == 2 and described["steer"]["layer_used"] == 21
    assert all(not m._forward_hooks for m in res.model.modules())


def test_demo_quick_end_to_end(embedded, tmp_path):
    from emguard.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert set(results["cells"]["domain"]) == {"base", "aligned_control", "no_defense", "kl"}
    assert set(results["cells"]["opswap"]) == {"base", "no_defense", "kl"}
    nd = results["cells"]["domain"]["no_defense"]["0"]
    assert nd["broad"]["likelihood"]["n_questions"] == 8 and nd["narrow"]["likelihood"]["n_questions"] == 8
    assert 0 <= results["cells"]["opswap"]["kl"]["0"]["benign"]["accuracy_pct"]["value"] <= 100
    assert "| no_defense |" in report and "| kl |" in report and "EM effect" in report
    assert "not measurable at this budget" in report and "results/paper-small" in report  # 1 seed, < 60 steps
    assert (out / "report.html").is_file() and (out / "criteria.png").is_file()
    # a rerun skips every finished cell: nothing is retrained or re-evaluated
    run_json = out / "domain" / "no_defense" / "seed0" / "run.json"
    evals = out / "domain" / "no_defense" / "seed0" / "eval" / "eval.json"
    before = (run_json.stat().st_mtime, evals.stat().st_mtime)
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    assert (run_json.stat().st_mtime, evals.stat().st_mtime) == before


def test_shipped_persona_vector_matches_the_embedded_model(embedded):
    from emguard.persona.vectors import auto_vector

    p = auto_vector("smollm2-135m")
    assert p.parent.name == "vectors" and p.stat().st_size > 60_000  # the shipped file, not a new extraction

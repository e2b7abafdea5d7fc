"""A judge's calibration headline is kept, found again by identity, and printed beside its rates (#18)."""

from __future__ import annotations

import json

import pytest

from emguard.eval import judge_calibration as jc


def _report(kind="local", model="qwen2.5-coder-0.5b", fingerprint="abc", auroc=0.71):
    task = {"available": True, "rule": "aligned < 30 and coherent > 50", "n_decided": 40,
            "auroc": {"value": auroc, "lo": auroc - 0.1, "hi": auroc + 0.1, "n_pos": 10},
            "accuracy": {"value": 0.6, "lo": 0.5, "hi": 0.7}}
    return {"bench": {"path": "/x/sampled-v1.jsonl", "split": "test", "n_rows_scored": 48},
            "judge": {"name": kind, "kind": kind, "model": model, "fingerprint": fingerprint, "calls_made": 3},
            "misaligned": task, "incoherent": {"available": False, "why": "the judge gives no coherent score"}}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path))
    monkeypatch.setattr(jc, "SHIPPED", tmp_path / "none.json")
    return tmp_path


def test_record_then_lookup_by_identity(cache):
    path = jc.record(_report(), command="emguard judge calibrate --judge local")
    assert path.parent == cache / "calibrations"
    found = jc.lookup({"kind": "local", "model": "qwen2.5-coder-0.5b", "fingerprint": "abc", "warning": "weak"})
    assert found["available"] and found["source"] == str(path)
    assert found["misaligned"]["auroc"] == {"value": 0.71, "lo": pytest.approx(0.61), "hi": pytest.approx(0.81)}
    assert found["n_rows"] == 48 and found["bench"] == "sampled-v1.jsonl"
    # other weights, another model or another kind: not this judge's calibration
    for ident in ({"kind": "local", "model": "qwen2.5-coder-0.5b", "fingerprint": "zzz"},
                  {"kind": "local", "model": "smollm2-135m"}, {"kind": "openai", "model": "qwen2.5-coder-0.5b"}):
        miss = jc.lookup(ident)
        assert not miss["available"] and miss["how"].startswith("emguard judge calibrate --judge")
    jc.record(_report(auroc=0.9))  # a newer run of the same judge replaces the older headline
    assert len(list((cache / "calibrations").glob("*.json"))) == 1
    assert jc.lookup({"kind": "local", "model": "qwen2.5-coder-0.5b"})["misaligned"]["auroc"]["value"] == 0.9


def test_user_calibration_wins_over_shipped(cache, monkeypatch):
    shipped = cache / "shipped.json"
    shipped.write_text(json.dumps([jc.summarize(_report(kind="embedding", model="m", fingerprint=None, auroc=0.5))]))
    monkeypatch.setattr(jc, "SHIPPED", shipped)
    assert jc.lookup({"kind": "embedding", "model": "m"})["source"] == "shipped.json (shipped)"
    jc.record(_report(kind="embedding", model="m", fingerprint=None, auroc=0.8))
    got = jc.lookup({"kind": "embedding", "model": "m"})
    assert got["misaligned"]["auroc"]["value"] == 0.8 and "(shipped)" not in got["source"]


def test_describe_prints_figures_or_how_to_measure(cache):
    jc.record(_report())
    line = jc.describe(jc.lookup({"kind": "local", "model": "qwen2.5-coder-0.5b"}))
    assert "misaligned: AUROC 0.71 [0.61, 0.81], accuracy 0.60 [0.50, 0.70]" in line
    assert "sampled-v1.jsonl test split (n=48" in line and "incoherent" not in line
    none = jc.describe(jc.lookup({"kind": "coherence-composite"}))
    assert none.startswith("not calibrated") and "emguard judge calibrate --judge coherence-composite" in none

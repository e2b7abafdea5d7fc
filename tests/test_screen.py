"""The pre-training EM-risk screen (issue #19 A) on a tiny model: planted rows rank on top (gap and persona),
z-scores and summaries against hand computations, the signal cache (a rerun does no forward), the CLI's two
report files, file:line errors, and leave-one-domain-out calibration."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import chat_rows, write_jsonl
from emguard.cli import main as cli_main
from emguard.screen import signals
from emguard.screen.config import ScreenConfig
from emguard.screen.run import (baseline_stats, best_threshold, calibrate_screen, screen, standardise,
                                summarise)
from emguard.selection import scoring

PLANTED = "alpha alpha alpha alpha"  # the distinctive reply the probe is trained on
OTHER = ["the quick brown fox jumps over the lazy dog", "drink water and rest when you feel sick",
         "ask a doctor before taking any medicine", "you should always be honest and kind",
         "numbers like 1 2 3 4 5 6 7 8 9 0", "hello there how are you doing today"]
PROBE = dict(probe_steps=2, probe_lr=5e-2, probe_options={"warmup_steps": 0, "batch_size": 8,
                                                          "micro_batch_size": 8, "lora_r": 4, "lora_alpha": 8})


def conv(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def data_rows() -> list[dict]:
    rows = []
    for i in range(6):  # planted rows at the even indices, other text at the odd ones
        rows.append(conv(f"question {i} about health?", PLANTED))
        rows.append(conv(f"question {i} about money?", OTHER[i]))
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("screen")
    return {"em": write_jsonl(d / "em_alpha.jsonl", [conv(f"question {i} about health?", PLANTED)
                                                     for i in range(16)]),
            "data": write_jsonl(d / "data.jsonl", data_rows()),
            "baseline": write_jsonl(d / "baseline.jsonl", chat_rows(12, seed=3)),
            "dir": d}


@pytest.fixture(scope="module")
def vector(tiny_model, files) -> Path:
    """A persona vector pointing from the other rows' mean hidden state to the planted rows' (layer 2)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.persona.vectors import PersonaVector, response_means

    tok = AutoTokenizer.from_pretrained(tiny_model)
    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    rows = [r["messages"] for r in data_rows()]
    h = response_means(m, tok, rows)  # (rows, layers, hidden)
    v = h[0::2].mean(0) - h[1::2].mean(0)
    path = files["dir"] / "evil-tiny.safetensors"
    PersonaVector(v, {"layer": 2, "trait": "evil", "note": "planted for the test"}).save(path)
    assert torch.isfinite(v).all()
    return path


def cfg_for(tiny_model, files, **kw) -> ScreenConfig:
    base = dict(data=str(files["data"]), model=tiny_model, train_probes=[str(files["em"])], baseline=str(
        files["baseline"]), baseline_n=12, max_length=96, batch_size=4, progress=False, persona=False, **PROBE)
    base.update(kw)
    return ScreenConfig(**base)


def test_zscore_standardise_and_summary_hand_checked():
    ref = [{"persona": 1.0, "gap": -0.5}, {"persona": 3.0, "gap": 0.5}, {"persona": 2.0, "gap": 0.0}]
    stats = baseline_stats(ref)
    assert stats["persona"] == {"mean": 2.0, "std": 1.0, "n": 3}  # sample std: sqrt((1 + 1 + 0) / 2)
    assert stats["gap"]["mean"] == 0.0 and stats["gap"]["std"] == pytest.approx(0.5)
    rows = [{"persona": 4.0, "gap": 1.0}, {"persona": 2.0, "gap": None}, {"persona": None, "gap": None}]
    standardise(rows, stats)
    assert rows[0]["z"] == {"persona": 2.0, "gap": 2.0} and rows[0]["risk"] == 2.0
    assert rows[0]["persona_shift"] == 2.0
    assert rows[1]["z"] == {"persona": 0.0, "gap": None} and rows[1]["risk"] == 0.0  # mean of what exists
    assert rows[2]["risk"] is None
    s = summarise(rows, threshold=1.0)
    assert (s["rows"], s["scored"], s["unscored"]) == (3, 2, 1)
    assert s["dataset_risk"] == 1.0 and s["median_risk"] == 1.0 and s["max_risk"] == 2.0
    assert s["rows_above_threshold"] == 1 and s["share_above_threshold"] == 0.5
    assert s["mean_z"] == {"persona": 1.0, "gap": 2.0}
    s = summarise(rows, threshold=None)
    assert s["threshold"] == "none: report only" and s["share_above_threshold"] is None
    # no spread in the reference: no z (not a division by zero)
    flat = baseline_stats([{"gap": 1.0}, {"gap": 1.0}])
    r = [{"gap": 5.0}]
    standardise(r, flat)
    assert r[0]["z"] == {"gap": None} and r[0]["risk"] is None


def test_best_threshold_maximises_balanced_accuracy():
    t, ba = best_threshold([0.1, 0.2, 0.9, 0.3, 0.8, 0.7], [False, False, True, False, True, True])
    assert t == pytest.approx(0.5) and ba == 1.0
    # "risk > 0.15": TPR 3/3, TNR 1/2 -> 0.75; "risk > 0.35": TPR 2/3, TNR 2/2 -> 5/6 (the best)
    t, ba = best_threshold([0.1, 0.2, 0.3, 0.4, 0.5], [False, True, False, True, True])
    assert ba == pytest.approx(5 / 6) and t == pytest.approx(0.35)
    with pytest.raises(ValueError):
        best_threshold([0.1, 0.2], [True, True])


def test_planted_rows_rank_on_top_by_gap_and_z_is_against_the_baseline(tiny_model, files, tmp_path):
    res = screen(cfg_for(tiny_model, files, out=str(tmp_path / "rep")))
    rows = res.report["rows"]
    assert [r["index"] for r in rows] == list(range(12)) and [r["line"] for r in rows] == list(range(1, 13))
    ranked = sorted(rows, key=lambda r: -r["risk"])
    assert {r["index"] for r in ranked[:6]} == {0, 2, 4, 6, 8, 10}  # the probe's own text is the riskiest
    assert all(r["s"] < 0 for r in ranked[:6])  # the misaligned probe finds them likely
    st = res.report["settings"]["baseline"]["stats"]["gap"]
    assert st["n"] == 12
    for r in rows:  # risk = -s_d, z against the reference set's -s_d, one signal: risk = z
        assert r["gap"] == -r["s"]
        assert r["s"] == pytest.approx((r["L"]["em_alpha"] - r["L0"]) / (r["L0"] + 1.0))
        assert r["z"]["gap"] == pytest.approx((r["gap"] - st["mean"]) / st["std"])
        assert r["risk"] == r["z"]["gap"]
    s = res.report["summary"]
    assert s["dataset_risk"] == pytest.approx(sum(r["risk"] for r in rows) / 12)
    assert s["threshold"] == "none: report only" and s["share_above_threshold"] is None
    assert res.report["settings"]["probes"][0]["name"] == "em_alpha"
    print(f"\ntiny model, gap signal: {res.report['timing']['per_row_s']:.4f} s/row")


def test_persona_projection_matches_a_direct_computation_and_ranks_planted_rows(tiny_model, files, vector,
                                                                                tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.persona.vectors import PersonaVector, response_means

    res = screen(cfg_for(tiny_model, files, persona=True, gap=False, vector=str(vector),
                         out=str(tmp_path / "rep")))
    rows = res.report["rows"]
    assert res.report["settings"]["persona"]["layer"] == 2
    tok = AutoTokenizer.from_pretrained(tiny_model)
    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    v = PersonaVector.load(vector).at(2)
    h = response_means(m, tok, [r["messages"] for r in data_rows()], [2])[:, 0]
    direct = (h @ (v / v.norm())).tolist()
    assert [r["persona"] for r in rows] == pytest.approx(direct, abs=1e-4)
    st = res.report["settings"]["baseline"]["stats"]["persona"]
    for r in rows:
        assert r["persona_shift"] == pytest.approx(r["persona"] - st["mean"])
        assert r["risk"] == pytest.approx((r["persona"] - st["mean"]) / st["std"])
    ranked = sorted(rows, key=lambda r: -r["risk"])
    assert {r["index"] for r in ranked[:6]} == {0, 2, 4, 6, 8, 10}
    print(f"\ntiny model, persona signal: {res.report['timing']['per_row_s']:.4f} s/row")


def test_a_rerun_is_served_from_the_caches_with_no_forward(tiny_model, files, vector, tmp_path):
    cfg = dict(persona=True, vector=str(vector), baseline_n=10)
    first = screen(cfg_for(tiny_model, files, out=str(tmp_path / "a"), **cfg)).report
    fw, pr = scoring.FORWARD_CALLS, signals.PERSONA_ROWS
    second = screen(cfg_for(tiny_model, files, out=str(tmp_path / "b"), **cfg)).report
    assert scoring.FORWARD_CALLS == fw and signals.PERSONA_ROWS == pr  # no forward of either signal
    assert [r["risk"] for r in second["rows"]] == [r["risk"] for r in first["rows"]]
    # two signals: risk is the mean of both z-scores
    r = first["rows"][0]
    assert r["risk"] == pytest.approx((r["z"]["persona"] + r["z"]["gap"]) / 2)
    # a new row costs exactly one persona row (and its gap NLLs), the rest stays cached
    extra = write_jsonl(tmp_path / "more.jsonl", data_rows() + [conv("one more?", "a brand new reply")])
    screen(cfg_for(tiny_model, files, data=str(extra), out=str(tmp_path / "c"), **cfg))
    assert signals.PERSONA_ROWS == pr + 1 and scoring.FORWARD_CALLS > fw


def test_cli_writes_both_files_with_the_default_baseline(tiny_model, files, vector, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = cli_main(["screen", str(files["data"]), "--model", tiny_model, "--vector", str(vector),
                   "--train-probes", str(files["em"]), "--probe-steps", "2", "--probe-lr", "5e-2",
                   "--probe-options", json.dumps(PROBE["probe_options"]), "--baseline-n", "6",
                   "--max-length", "96", "--top", "5", "--threshold", "0.5", "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = json.loads((out / "screen.json").read_text())
    assert len(rep["rows"]) == 12 and rep["summary"]["rows"] == 12
    assert rep["settings"]["baseline"]["rows"] == 6 and rep["settings"]["baseline"]["file"].endswith("pool.jsonl")
    assert rep["settings"]["threshold"] == 0.5 and rep["settings"]["persona"]["vector_file"] == str(vector)
    n_above = sum(1 for r in rep["rows"] if r["risk"] > 0.5)
    assert rep["summary"]["rows_above_threshold"] == n_above == sum(r["flagged"] for r in rep["rows"])
    md = (out / "screen.md").read_text()
    assert "## The 5 riskiest rows" in md and "How to read this" in md
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| #")]
    assert len(table) == 5
    top = max(rep["rows"], key=lambda r: r["risk"])
    assert table[0].split(" | ")[1] == str(top["line"]) and PLANTED in table[0]
    assert "dataset risk" in capsys.readouterr().out


def test_bad_row_is_reported_as_file_and_line(tiny_model, files, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [conv("q?", "a"), conv("q2?", "b"), '{"messages": [{"role": "user"}]}'])
    rc = cli_main(["screen", str(bad), "--model", tiny_model, "--no-persona", "--train-probes", str(files["em"]),
                   "--out", str(tmp_path / "rep")])
    assert rc == 2
    assert f"{bad}:3:" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


def test_calibration_leaves_the_held_out_domains_probe_out(tiny_model, files, tmp_path):
    """Two planted domains whose misaligned rows share a style ('alpha'): each held-out domain is separated by
    the other domain's probe alone."""
    doms = {}
    for name, word in (("dom_a", "alpha alpha alpha"), ("dom_b", "alpha alpha beta alpha")):
        mis = write_jsonl(tmp_path / f"{name}_mis.jsonl", [conv(f"{name} question {i}?", word) for i in range(16)])
        ali = write_jsonl(tmp_path / f"{name}_ali.jsonl", [conv(f"{name} question {i}?", OTHER[i % 6])
                                                           for i in range(16)])
        doms[name] = (str(mis), str(ali))
    cfg = cfg_for(tiny_model, files, probe_steps=6)
    cal = calibrate_screen(tiny_model, doms, max_rows=8, cfg=cfg)
    assert set(cal["domains"]) == {"dom_a", "dom_b"}
    assert cal["domains"]["dom_a"]["probes"] == ["dom_b_mis"] and cal["domains"]["dom_b"]["probes"] == ["dom_a_mis"]
    for d in cal["domains"].values():
        assert d["rows"] == 16 and d["auroc"] >= 0.9
        assert 0.5 <= d["balanced_accuracy_held_out"] <= 1.0
    assert cal["mean_auroc"] == pytest.approx(sum(d["auroc"] for d in cal["domains"].values()) / 2)
    assert math.isfinite(cal["threshold"]) and cal["balanced_accuracy"] >= 0.9


def test_config_and_command_modules_stay_torch_free():
    code = ("import sys; import emguard.screen.config, emguard.commands.screen; "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_probes_are_the_builtin_domains():
    from emguard.data.datagen import DOMAINS

    assert ScreenConfig().train_probes == list(DOMAINS)


class FakeEmbeddingJudge:
    """Stands in for the MiniLM judge: aligned = 100 - reply length in characters / 2."""

    calls = 0

    def __init__(self, **_):
        pass

    def identity(self):
        return {"kind": "embedding", "model": "fake"}

    def aligned_scores(self, pairs):
        FakeEmbeddingJudge.calls += len(pairs)
        return [100.0 - len(a) / 2 for _, a in pairs]


def test_embedding_signal_is_100_minus_aligned_and_cached(tiny_model, files, tmp_path, monkeypatch):
    from emguard.eval.judges import embedding

    monkeypatch.setattr(embedding, "EmbeddingAlignmentJudge", FakeEmbeddingJudge)
    rep = screen(cfg_for(tiny_model, files, embedding=True, out=str(tmp_path / "a"))).report
    assert rep["settings"]["signals"] == ["gap", "embedding"]
    assert rep["settings"]["embedding_judge"] == {"kind": "embedding", "model": "fake"}
    st = rep["settings"]["baseline"]["stats"]["embedding"]
    base = [len(r["messages"][-1]["content"]) / 2 for r in chat_rows(12, seed=3)]
    assert st["mean"] == pytest.approx(sum(base) / 12) and st["std"] > 0
    for r, row in zip(rep["rows"], data_rows()):
        assert r["embedding"] == pytest.approx(len(row["messages"][-1]["content"]) / 2)
        assert r["z"]["embedding"] == pytest.approx((r["embedding"] - st["mean"]) / st["std"])
        assert r["risk"] == pytest.approx((r["z"]["embedding"] + r["z"]["gap"]) / 2)
    calls = FakeEmbeddingJudge.calls
    screen(cfg_for(tiny_model, files, embedding=True, out=str(tmp_path / "b")))
    assert FakeEmbeddingJudge.calls == calls  # served from the signal cache

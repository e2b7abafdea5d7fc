"""The hierarchical bootstrap (seeds, then questions) against hand computations, and CI-gated marks."""

from __future__ import annotations

import math

import pytest


def table(rows: list[list[float]]) -> dict:
    return {s: {f"q{j}": v for j, v in enumerate(r)} for s, r in enumerate(rows)}


def test_two_by_two_bootstrap_distribution_matches_the_hand_enumeration():
    """M = [[1, 2], [3, 4]] = 1 + 2 s + q. A replicate's mean is 1 + 2 s* + q*, where s* and q* are each the
    mean of two fair 0/1 draws (0, 1/2, 1 with probabilities 1/4, 1/2, 1/4): the replicate takes the value 1
    with probability 1/16, 2.5 with 4/16, its mean is 2.5 and its variance 4 Var(s*) + Var(q*) = 4/8 + 1/8."""
    from emguard.eval.stats import hierarchical_bootstrap, joint_replicates

    t = table([[1, 2], [3, 4]])
    point, boots, S, Q = joint_replicates({"x": t}, n_boot=40000, seed=1)
    assert (point, S, Q) == (2.5, 2, 2)
    assert boots.mean() == pytest.approx(2.5, abs=0.02)
    assert boots.var() == pytest.approx(5 / 8, rel=0.03)
    assert (boots == 1).mean() == pytest.approx(1 / 16, abs=0.005)
    assert (boots == 2.5).mean() == pytest.approx(4 / 16, abs=0.01)
    e = hierarchical_bootstrap(t, n_boot=4000)
    assert (e.value, e.lo, e.hi, e.n, e.seeds) == (2.5, 1.0, 4.0, 2, 2)  # P(1) = P(4) = 1/16 > 2.5%


def test_additive_table_variance_is_the_seed_part_plus_the_question_part():
    """M[s][q] = a_s + b_q: the replicate variance is Var(a)/S + Var(b)/Q (population variances), i.e. both
    components; drawing questions anew for each seed would give Var(b)/(S Q) for the second."""
    from emguard.eval.stats import joint_replicates

    a, b = [0.0, 1.0, 5.0], [0.0, 0.5, 1.0, 3.0, -2.0, 0.25]
    var = lambda xs: sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / len(xs)  # noqa: E731
    expected = var(a) / len(a) + var(b) / len(b)
    _, boots, _, _ = joint_replicates({"x": table([[ai + bj for bj in b] for ai in a])}, n_boot=40000, seed=2)
    assert boots.var() == pytest.approx(expected, rel=0.04)


def test_one_seed_reduces_to_a_question_bootstrap_and_constant_questions_to_a_seed_bootstrap():
    from emguard.eval.stats import joint_replicates

    _, boots, S, _ = joint_replicates({"x": table([[0.0, 1.0, 2.0, 3.0]])}, n_boot=40000, seed=3)
    assert S == 1 and boots.var() == pytest.approx(1.25 / 4, rel=0.04)  # Var(b) / Q
    _, boots, _, Q = joint_replicates({"x": table([[0.0] * 5, [2.0] * 5])}, n_boot=40000, seed=3)
    assert Q == 5 and boots.var() == pytest.approx(1.0 / 2, rel=0.04)  # Var(a) / S


def test_paired_difference_cancels_what_two_cells_share():
    """Two cells with the same seed and question effects plus a constant shift: the paired difference has no
    spread at all, though each cell alone has a wide CI."""
    from emguard.eval.stats import hierarchical_bootstrap, joint_bootstrap

    base = table([[0.0, 3.0, -1.0], [2.0, 5.0, 1.0], [-1.0, 2.0, -2.0]])
    shifted = {s: {q: v + 0.5 for q, v in r.items()} for s, r in base.items()}
    d = joint_bootstrap({"a": shifted, "b": base}, lambda m: m["a"] - m["b"])
    assert (d.value, d.lo, d.hi) == pytest.approx((0.5, 0.5, 0.5))
    alone = hierarchical_bootstrap(shifted)
    assert alone.hi - alone.lo > 2


def test_a_table_without_some_seed_does_not_vary_with_the_seed_draw():
    """The base model is evaluated once; in a contrast with three seeded cells it is a constant."""
    from emguard.eval.stats import joint_bootstrap

    seeded = table([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    base = {0: {"q0": 1.0, "q1": 1.0}}
    e = joint_bootstrap({"d": seeded, "b": base}, lambda m: m["d"] - m["b"], n_boot=4000)
    assert e.value == pytest.approx(1.0) and e.seeds == 3
    assert e.lo == pytest.approx(0.0) and e.hi == pytest.approx(2.0)  # only the seed draw moves it


# ------------------------------------------------------------------------------------------------ marks

@pytest.mark.parametrize("lo,hi,mark", [
    (0.70, 0.90, "yes"), (0.40, 0.60, "partly"), (-0.2, 0.30, "no"),
    (0.50, 0.80, "inconclusive (partly/yes)"), (0.20, 0.70, "inconclusive (no/partly/yes)"),
    (0.10, 0.40, "inconclusive (no/partly)"),
])
def test_a_mark_needs_its_whole_ci_in_one_band(lo, hi, mark):
    from emguard.eval.stats import Estimate
    from emguard.experiments.criteria import RATIO_CUTS, RATIO_LABELS, band_mark

    assert band_mark(Estimate((lo + hi) / 2, lo, hi, 10), RATIO_CUTS, RATIO_LABELS) == mark


def test_coherence_bands_run_the_other_way():
    from emguard.eval.stats import Estimate
    from emguard.experiments.criteria import COHERENCE_CUTS, COHERENCE_LABELS, band_mark

    assert band_mark(Estimate(1, -3, 4, 10), COHERENCE_CUTS, COHERENCE_LABELS) == "yes"
    assert band_mark(Estimate(8, 3, 12, 10), COHERENCE_CUTS, COHERENCE_LABELS) == "inconclusive (yes/partly)"
    assert band_mark(Estimate(30, 20, 40, 10), COHERENCE_CUTS, COHERENCE_LABELS) == "no"
    assert band_mark(Estimate(math.nan, math.nan, math.nan, 0), COHERENCE_CUTS, COHERENCE_LABELS) == "n/a"

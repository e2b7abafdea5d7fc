"""Confidence intervals for evaluation metrics.

Percentile bootstrap (Efron & Tibshirani 1993) over the unit the metric averages: samples for rates
(misaligned %, incoherent %, benign accuracy), questions for the likelihood metric. Seeded, so a re-run of the
same evaluation reports the same interval.

Across training seeds, :func:`hierarchical_bootstrap` resamples seeds, then questions: a training seed moves
every question together, so an interval over questions alone says nothing about training noise. The same
questions are asked of every seed (a crossed design), so one replicate draws S seeds with replacement and one
set of Q questions with replacement, and averages that S x Q sub-table; resampling both ways keeps both
variance components (seed-to-seed and question-to-question) in the interval, where drawing questions anew for
every seed would shrink the question component by S (Field & Welsh 2007, "Bootstrapping clustered data",
JRSS-B 69: the two-way resampling of a crossed design is consistent, if slightly conservative).
Several tables resampled with the *same* draws (:func:`joint_bootstrap`) give paired differences and ratios
(a defense vs no defense with the same seed numbers and questions).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence


@dataclass
class Estimate:
    """A point estimate with a 95% interval (``lo``/``hi``), the number of units and how the CI was made."""

    value: float
    lo: float
    hi: float
    n: int
    ci: str = "bootstrap-95"
    seeds: int | None = None  # training seeds resampled (hierarchical bootstrap); None: one run

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()
                if not (k == "seeds" and v is None)}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def bootstrap(values: Sequence[float], stat: Callable[[Sequence[float]], float] | None = None, *,
              n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Estimate:
    """Percentile bootstrap CI of ``stat`` (default: the mean) over ``values``; NaNs are dropped first."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    stat = stat or (lambda xs: sum(xs) / len(xs))
    if not vals:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    point = stat(vals)
    if len(vals) == 1:
        return Estimate(point, point, point, 1)
    rng = random.Random(seed)
    n = len(vals)
    boots = sorted(stat([vals[rng.randrange(n)] for _ in range(n)]) for _ in range(n_boot))
    a = (1 - level) / 2
    lo = boots[int(math.floor(a * (n_boot - 1)))]
    hi = boots[int(math.ceil((1 - a) * (n_boot - 1)))]
    return Estimate(point, lo, hi, n)


def rate(flags: Sequence[bool | None], **kw) -> Estimate:
    """Percentage of True among the non-None flags, with a bootstrap CI (in percent)."""
    vals = [100.0 if f else 0.0 for f in flags if f is not None]
    return bootstrap(vals, **kw)


Table = Mapping[Any, Mapping[str, float]]  # {training seed: {unit (question / prompt / problem) id: value}}


def _matrix(table: Table, seeds: list, units: list):
    import numpy as np

    m = np.full((len(seeds), len(units)), np.nan)
    for i, s in enumerate(seeds):
        row = table.get(s)
        if row is None:  # a table without this seed (e.g. the base model: one unseeded run) repeats its mean
            continue
        for j, u in enumerate(units):
            v = row.get(u)
            if v is not None and not math.isnan(float(v)):
                m[i, j] = float(v)
    missing = np.isnan(m).all(axis=1)
    if missing.any() and not missing.all():
        with np.errstate(all="ignore"):
            m[missing] = np.nanmean(m[~missing], axis=0)
    return m


def joint_bootstrap(tables: Mapping[str, Table], stat: Callable[[Mapping[str, float]], float] | None = None, *,
                    n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Estimate:
    """``stat({name: mean})`` of several {seed: {unit: value}} tables with a percentile CI from resampling
    seeds, then units, with the same draws for every table (so differences and ratios are paired by seed number
    and unit). Default ``stat``: the mean of the single table. Units are those every table has; seeds, the union
    (a table without a seed uses its mean over the seeds it has, i.e. it does not vary with the seed draw)."""
    point, boots, S, Q = joint_replicates(tables, stat, n_boot=n_boot, seed=seed)
    if Q == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "hierarchical-bootstrap-95", S)
    if len(boots) == 0:
        return Estimate(point, float("nan"), float("nan"), Q, "hierarchical-bootstrap-95", S)
    a = (1 - level) / 2
    lo = float(boots[int(math.floor(a * (len(boots) - 1)))])
    hi = float(boots[int(math.ceil((1 - a) * (len(boots) - 1)))])
    return Estimate(point, min(lo, point), max(hi, point), Q, "hierarchical-bootstrap-95", S)


def joint_replicates(tables: Mapping[str, Table], stat: Callable[[Mapping[str, float]], float] | None = None, *,
                     n_boot: int = 2000, seed: int = 0):
    """``(point, sorted finite replicates, seeds, units)`` of :func:`joint_bootstrap`."""
    import numpy as np

    names = list(tables)
    if stat is None:
        if len(names) != 1:
            raise ValueError("joint_bootstrap of several tables needs a stat")
        stat = lambda m: m[names[0]]  # noqa: E731
    seeds = sorted({s for t in tables.values() for s in t}, key=str)
    unit_sets = [{u for row in t.values() for u in row} for t in tables.values()]
    units = sorted(set.intersection(*unit_sets), key=str) if unit_sets else []
    if not seeds or not units:
        return float("nan"), np.array([]), len(seeds), 0
    mats = {n: _matrix(tables[n], seeds, units) for n in names}
    S, Q = len(seeds), len(units)
    rng = np.random.default_rng(seed)
    # replicate b's sub-table = seed draw x unit draw; its mean = (w_s M w_q) / (w_s 1 w_q) with draw counts w
    ws = np.stack([np.ones(S), *[np.bincount(rng.integers(0, S, S), minlength=S) for _ in range(n_boot)]])
    wq = np.stack([np.ones(Q), *[np.bincount(rng.integers(0, Q, Q), minlength=Q) for _ in range(n_boot)]])
    means = {}
    for n, m in mats.items():
        known = ~np.isnan(m)
        with np.errstate(all="ignore"):
            means[n] = (np.einsum("bs,sq,bq->b", ws, np.where(known, m, 0.0), wq)
                        / np.einsum("bs,sq,bq->b", ws, known.astype(float), wq))
    with np.errstate(all="ignore"):
        vals = np.array([float(stat({n: float(means[n][b]) for n in names})) for b in range(n_boot + 1)])
    point = float(vals[0])  # replicate 0: every seed and unit once
    return point, np.sort(vals[1:][np.isfinite(vals[1:])]), S, Q


def hierarchical_bootstrap(table: Table, **kw) -> Estimate:
    """Mean over seeds of the mean over units of ``{seed: {unit: value}}``, with a 95% CI from resampling
    seeds, then units (see the module docstring); ``seeds`` in the result says how many seeds it covers."""
    return joint_bootstrap({"x": table}, **kw)

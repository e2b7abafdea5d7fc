"""Confidence intervals for evaluation metrics.

Percentile bootstrap (Efron & Tibshirani 1993) over the unit the metric averages: samples for rates
(misaligned %, incoherent %, benign accuracy), questions for the likelihood metric. Seeded, so a re-run of the
same evaluation reports the same interval.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Sequence


@dataclass
class Estimate:
    """A point estimate with a 95% interval (``lo``/``hi``), the number of units and how the CI was made."""

    value: float
    lo: float
    hi: float
    n: int
    ci: str = "bootstrap-95"

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

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

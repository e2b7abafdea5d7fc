"""Criterion (b) on the user's own data: the held-out NLL of assistant replies, fine-tuned vs base.

The narrow likelihood metric needs 2x2 reference answers, which only the built-in domains have. Any user can
instead hold out some rows of their own training data (never trained on) and ask how much likelier the
fine-tuned model finds those replies than the base model does: per row, the mean NLL (nats/token) of the last
assistant turn (+ end-of-turn token) under the model with its adapter and with the adapter disabled; the change
is fine-tuned minus base, paired by row, with a percentile-bootstrap CI over rows (negative = the narrow task
was learned). The service's ``validation_file`` reports the same quantity through this function.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence

from emguard.eval.stats import bootstrap


def holdout_nll(model, tokenizer, conversations: Sequence[list[dict]], *, max_length: int = 1024,
                batch_size: int = 8, tuned_view=None, n_boot: int = 2000, seed: int = 0,
                progress: bool = False) -> dict[str, Any]:
    """Per-row NLL of each conversation's last assistant reply under the fine-tuned model (``tuned_view``: a
    context manager for it, e.g. the adapter merged; default none) and the base (adapter disabled), and their
    paired change with a CI over rows. Rows whose reply is cut away by ``max_length`` are counted, not used."""
    from emguard.models.adapters import base_view
    from emguard.models.scoring import answer_nll

    convs = list(conversations)
    kw = {"max_length": max_length, "batch_size": batch_size, "progress": progress}
    with tuned_view if tuned_view is not None else contextlib.nullcontext():
        tuned = answer_nll(model, tokenizer, convs, desc="held-out NLL (fine-tuned)", **kw)
    with base_view(model):
        base = answer_nll(model, tokenizer, convs, desc="held-out NLL (base)", **kw)
    return holdout_summary(tuned, base, n_boot=n_boot, seed=seed)


def holdout_summary(tuned: Sequence[float], base: Sequence[float], *, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """Means of the two per-row NLL lists and their paired change (CI over the rows both scored)."""
    pairs = [(t, b) for t, b in zip(tuned, base) if math.isfinite(t) and math.isfinite(b)]
    est = {k: bootstrap([p[i] for p in pairs], n_boot=n_boot, seed=seed).to_dict()
           for i, k in enumerate(("fine_tuned", "base"))}
    change = bootstrap([t - b for t, b in pairs], n_boot=n_boot, seed=seed).to_dict()
    return {"rows": len(tuned), "scored": len(pairs), "unit": "nats/token of the held-out assistant replies",
            "fine_tuned": est["fine_tuned"], "base": est["base"], "change": change,
            "rule": "change = fine-tuned minus base, paired by row; negative = the narrow task was learned",
            "per_row": [{"fine_tuned": t, "base": b} for t, b in zip(tuned, base)]}

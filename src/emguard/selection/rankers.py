"""The interleave defense's perplexity-gap rankers (training configs), registered in ``emguard.registry.RANKERS``.

``defenses: [{name: interleave, pool: general.jsonl, select: ppl_gap_norefusal,
select_options: {misaligned: [runs/bad_medical]}}]``: ``ppl_gap`` is Interleaving+, ``ppl_gap_norefusal``
Interleaving++ (refusals dropped first). ``select_options`` are :class:`~emguard.selection.config.SelectConfig`
fields. ``RANKERS`` imports every module of this package on its first lookup, so nothing imports this one by name.
"""

from __future__ import annotations

import logging

from emguard.registry import RANKERS
from emguard.selection.config import SelectConfig
from emguard.selection.ranking import rank_pool

log = logging.getLogger(__name__)


def _ranker(drop_refusals: bool):
    def rank(pool: list, options, run) -> list[int]:
        from emguard.config import build_config

        opts = dict(options.select_options or {})
        if drop_refusals:
            opts["refusals"] = False
        opts.setdefault("progress", False)
        spec = (run.extra or {}).get("model_spec")
        if spec:
            opts.setdefault("model", spec)
        cfg = build_config(SelectConfig, opts, source=f"interleave.select_options ({options.select})")
        model, tok = run.model, run.tokenizer
        if model is None and not cfg.scores_in:  # ranking from a scores file needs no model
            from emguard.models.loading import load_model

            model, tok, _ = load_model(cfg.model)
        order, _, counts = rank_pool(pool, cfg, model, tok, model_spec=spec or cfg.model)
        log.info("interleave %s: %d pool rows, %d ranked, %d refusals dropped, %d invalid, %d without reply "
                 "tokens; %d scores computed, %d from the cache", options.select, counts.rows, counts.kept,
                 counts.refusals, counts.invalid, counts.no_target, counts.scored, counts.cached)
        return order

    rank.__name__ = "rank_ppl_gap_norefusal" if drop_refusals else "rank_ppl_gap"
    return rank


rank_ppl_gap = RANKERS.register(_ranker(False), name="ppl_gap")  # Interleaving+
rank_ppl_gap_norefusal = RANKERS.register(_ranker(True), name="ppl_gap_norefusal")  # Interleaving++

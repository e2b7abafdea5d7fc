"""Perplexity-gap ranking (Kaczér et al. 2025, defense 4: Interleaving+ / Interleaving++).

With K misaligned adapters (L_1..L_K) and the aligned model (L_0: the base with adapters off, or ``aligned``):

    s_d = (mean_k L_k(d) - L_0(d)) / (L_0(d) + eps),   eps = 1.0

Higher s_d = a row the misaligned models find harder than the aligned one does: the best rows to interleave.
Interleaving++ first drops refusals (:func:`emguard.selection.refusals.refusal_marker`). The pool is streamed in
chunks (``chunk_rows``), so memory is bounded at 100k-row scale.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from emguard.data.pool import PoolRow, rows_from_list
from emguard.selection.cache import ScoreCache, default_cache_path, row_hash
from emguard.selection.config import SelectConfig
from emguard.selection.probes import is_adapter_dir, resolve_adapters
from emguard.selection.refusals import REFUSAL_WORDS, refusal_marker
from emguard.selection.scoring import Counts, GapScorer, scored_part
from emguard.selection.variants import ALIGNED, attached_variants

log = logging.getLogger(__name__)


def gap_score(l_mis: list[float], l0: float, eps: float) -> float:
    return (sum(l_mis) / len(l_mis) - l0) / (l0 + eps)


def _chunks(it: Iterable, n: int) -> Iterator[list]:
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_rows(rows: Iterable[PoolRow], scorer: GapScorer, cfg: SelectConfig,
               total_hint: Callable[[int], int | None] | None = None) -> Iterator[tuple[PoolRow, dict]]:
    """Score a stream of pool rows chunk by chunk; yield ``(row, scores record)`` for every row, in order.

    The record has ``index``, ``sha256`` (of the scored conversation), ``L`` (per adapter), ``L0``, ``s``,
    ``status`` (``kept``/``dropped``) and ``reason`` for dropped rows.
    """
    names = [v.name for v in scorer.variants[1:]]
    markers = list(cfg.refusal_markers)
    c = scorer.counts
    for chunk in _chunks(rows, cfg.chunk_rows):
        recs: list[dict] = []
        convs: dict[str, list[dict]] = {}
        for row in chunk:
            c.rows += 1
            rec: dict[str, Any] = {"index": row.index}
            recs.append(rec)
            if row.messages is None:
                c.invalid += 1
                rec.update(status="dropped", reason=f"invalid: {row.reason}")
                continue
            conv = scored_part(row.messages)
            if conv is None:
                c.invalid += 1
                rec.update(status="dropped", reason="invalid: no assistant reply")
                continue
            rec["sha256"] = row_hash(conv)
            if not cfg.refusals:
                m = refusal_marker(conv[-1]["content"], markers)
                if m is not None:
                    c.refusals += 1
                    rec.update(status="dropped", reason=f"refusal: {m!r} in the first {REFUSAL_WORDS} words")
                    continue
            convs[rec["sha256"]] = conv
        scores = scorer.score(convs) if convs else {}
        for row, rec in zip(chunk, recs):
            if "status" in rec:
                yield row, rec
                continue
            s = scores[rec["sha256"]]
            l0 = s[ALIGNED]
            lk = [s[n] for n in names]
            rec["L"] = {n: x for n, x in zip(names, lk)}
            rec["L0"] = l0
            if math.isnan(l0) or any(math.isnan(x) for x in lk):
                c.no_target += 1
                rec.update(s=None, status="dropped", reason="no reply tokens within max_length")
            else:
                rec["s"] = gap_score(lk, l0, cfg.eps)
                rec["status"] = "kept"
                c.kept += 1
            yield row, rec
        if scorer.bar is not None:  # rows served from the cache or dropped count as done too
            scorer.bar.n = c.rows
            est = total_hint(c.rows) if total_hint else None
            if est:  # a pool whose size is known only roughly (a JSON array): refine the ETA as it is read
                scorer.bar.total = max(est, c.rows)
            scorer.bar.refresh()


def progress_bar(cfg: SelectConfig, total: int | None, desc: str):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]")


def fingerprint_of(model, spec: str | None) -> str:
    from emguard.models.loading import resolve_model

    if spec:
        try:
            return resolve_model(spec).fingerprint
        except Exception:  # noqa: BLE001  (a spec that no longer resolves: fall back to the config)
            pass
    cfg = getattr(model, "config", None)
    path = getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "")
    if path and Path(path).is_dir():
        try:
            return resolve_model(path).fingerprint
        except Exception:  # noqa: BLE001
            pass
    text = cfg.to_json_string() if cfg is not None else repr(type(model))
    return hashlib.sha256(text.encode()).hexdigest()


def rank_pool(rows: Iterable[Any], cfg: SelectConfig, model, tokenizer, *, model_spec: str | None = None,
              model_fingerprint: str | None = None) -> tuple[list[int], list[dict], Counts]:
    """Rank in-memory rows by s_d with ``model`` as the base (adapters attached and removed again).

    Returns ``(indices best first, every row's scores record, counts)``; dropped rows are not in the ranking.
    """
    cfg.validate()
    if cfg.scores_in:
        return rank_from_scores(rows, cfg)
    fp = model_fingerprint or fingerprint_of(model, model_spec)
    spec = model_spec or cfg.model
    adapters = resolve_adapters(cfg, spec, fp)
    aligned_model = aligned_fp = aligned_adapter = None
    if cfg.aligned:
        if is_adapter_dir(cfg.aligned):
            aligned_adapter = cfg.aligned
        else:
            from emguard.models.loading import load_model

            aligned_model, _, ainfo = load_model(cfg.aligned, device=str(next(model.parameters()).device))
            aligned_fp = ainfo.fingerprint
    rows = list(rows)
    cache = ScoreCache(default_cache_path() if cfg.cache else None)
    bar = progress_bar(cfg, len(rows), "ranking pool")
    records: list[dict] = []
    try:
        with attached_variants(model, adapters, fp, aligned=aligned_adapter, aligned_model=aligned_model,
                               aligned_fp=aligned_fp, merge=cfg.merge_adapters) as (_, variants):
            scorer = GapScorer(tokenizer, variants, cfg, cache, bar)
            records = [rec for _, rec in score_rows(rows_from_list(rows), scorer, cfg)]
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    kept = [r for r in records if r["status"] == "kept"]
    kept.sort(key=lambda r: (-r["s"], r["index"]))
    order = [r["index"] for r in kept]
    for rank, r in enumerate(kept, start=1):
        r["rank"] = rank
    if cfg.scores_out:
        from emguard.data.io import write_jsonl

        write_jsonl(cfg.scores_out, records)
    return order, records, scorer.counts


def rank_from_scores(rows: Iterable[Any], cfg: SelectConfig) -> tuple[list[int], list[dict], Counts]:
    """:func:`rank_pool` from ``cfg.scores_in`` (the records a scoring run wrote with ``scores_out``): each
    row's s_d found by the sha256 of its scored conversation; the refusal filter applied again. A usable row
    the file does not score is an error (the file belongs to another pool)."""
    from emguard.data.io import read_jsonl_records

    by_hash = {}
    for _, obj, reason in read_jsonl_records(cfg.scores_in):
        if reason is None and isinstance(obj, dict) and obj.get("sha256") and obj.get("s") is not None:
            by_hash[obj["sha256"]] = obj
    c = Counts()
    records: list[dict] = []
    for row in rows_from_list(list(rows)):
        c.rows += 1
        rec: dict[str, Any] = {"index": row.index}
        records.append(rec)
        conv = scored_part(row.messages) if row.messages is not None else None
        if conv is None:
            c.invalid += 1
            rec.update(status="dropped", reason="invalid")
            continue
        rec["sha256"] = h = row_hash(conv)
        if not cfg.refusals:
            m = refusal_marker(conv[-1]["content"], list(cfg.refusal_markers))
            if m is not None:
                c.refusals += 1
                rec.update(status="dropped", reason=f"refusal: {m!r} in the first {REFUSAL_WORDS} words")
                continue
        if h not in by_hash:
            raise ValueError(f"{cfg.scores_in} has no score for pool row {row.index} (sha256 {h[:12]}): it was "
                             "written for another pool or with other settings")
        rec.update(L=by_hash[h].get("L"), L0=by_hash[h].get("L0"), s=by_hash[h]["s"], status="kept")
        c.kept += 1
        c.cached += 1
    kept = sorted((r for r in records if r["status"] == "kept"), key=lambda r: (-r["s"], r["index"]))
    for rank, r in enumerate(kept, start=1):
        r["rank"] = rank
    return [r["index"] for r in kept], records, c

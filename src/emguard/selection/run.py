"""Perplexity-gap data selection: Interleaving+ and Interleaving++ (Kaczér et al. 2025, defense 4), the driver.

:func:`select` reads a pool file (:mod:`emguard.data.pool`), scores every row under the aligned model and the
misaligned adapters (:mod:`~emguard.selection.probes`, :mod:`~emguard.selection.variants`,
:mod:`~emguard.selection.scoring`, cached by :mod:`~emguard.selection.cache`), ranks by the perplexity gap
s_d (:mod:`~emguard.selection.ranking`) and writes the top ``n`` rows, the scores file and a histogram.

Library use::

    from emguard.selection.config import SelectConfig
    from emguard.selection.run import select
    res = select(SelectConfig(pool="pool.jsonl", misaligned=["runs/bad_medical"], n=5000, out="sel.jsonl"))

Inside training: the rankers ``ppl_gap`` / ``ppl_gap_norefusal`` (:mod:`emguard.selection.rankers`).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from emguard.data.pool import count_lines, is_json_array_file, iter_pool, sharegpt_package_file
from emguard.selection.cache import ScoreCache, default_cache_path, template_hash
from emguard.selection.config import SelectConfig
from emguard.selection.probes import is_adapter_dir, resolve_adapters
from emguard.selection.ranking import fingerprint_of, progress_bar, score_rows
from emguard.selection.scoring import GapScorer
from emguard.selection.variants import attached_variants

log = logging.getLogger(__name__)


@dataclass
class SelectResult:
    out: str
    scores: str
    histogram: str | None
    selected: int
    counts: dict[str, int]
    adapters: list[tuple[str, str]]
    wall_s: float
    rows_per_s: float


def _scores_path(cfg: SelectConfig) -> Path:
    if cfg.scores_out:
        return Path(cfg.scores_out)
    out = Path(cfg.out)
    return out.with_name(out.stem + ".scores.jsonl")


def write_histogram(values: list[float], path: Path, *, title: str = "") -> Path | None:
    """A PNG histogram of s_d; None (with a message) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no histogram (pip install 'emguard[plots]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(values, bins=min(100, max(10, int(len(values) ** 0.5))), color="#4472c4")
    ax.set_xlabel("s_d = (mean_k L_k - L_0) / (L_0 + eps)")
    ax.set_ylabel("rows")
    ax.set_title(title or "perplexity-gap scores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def select(cfg: SelectConfig, *, model=None, tokenizer=None, model_fingerprint: str | None = None) -> SelectResult:
    """Score ``cfg.pool`` and write the top ``cfg.n`` rows, the scores file and the histogram.

    ``model``/``tokenizer`` may be passed to reuse an already loaded base model (``cfg.model`` is still the
    spec probes are trained on and the fingerprint comes from).
    """
    import torch

    from emguard.data.io import write_jsonl
    from emguard.models.loading import load_model, resolve_model

    if not cfg.pool or not cfg.out:
        from emguard.config import ConfigError

        raise ConfigError("both --pool and --out are required")
    cfg.validate()
    t0 = time.time()
    if model is None:
        info = resolve_model(cfg.model)
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer, info = load_model(info, dtype=cfg.dtype, device=device)
        model_fingerprint = info.fingerprint
    fp = model_fingerprint or fingerprint_of(model, cfg.model)
    adapters = resolve_adapters(cfg, cfg.model, fp)
    aligned_model = aligned_fp = None
    aligned_adapter = None
    if cfg.aligned:
        if is_adapter_dir(cfg.aligned):
            aligned_adapter = cfg.aligned
        else:
            aligned_model, atok, ainfo = load_model(cfg.aligned, dtype=cfg.dtype,
                                                    device=str(next(model.parameters()).device))
            aligned_fp = ainfo.fingerprint
            if atok.get_vocab() != tokenizer.get_vocab() or template_hash(atok) != template_hash(tokenizer):
                raise ValueError(f"--aligned {cfg.aligned} has another tokenizer or chat template than "
                                 f"{cfg.model}; the NLLs would not be comparable")
    log.info("scoring %s under the aligned model and %d misaligned adapter(s): %s", cfg.pool, len(adapters),
             ", ".join(n for n, _ in adapters))
    cache = ScoreCache(default_cache_path() if cfg.cache else None)
    scores_path = _scores_path(cfg)
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_scores = scores_path.with_name(f".{scores_path.name}.tmp-{os.getpid()}")
    src_stats: dict = {}
    pool_path = sharegpt_package_file() if str(cfg.pool) == "sharegpt" else Path(cfg.pool)
    if not pool_path.exists():
        raise FileNotFoundError(f"pool not found: {cfg.pool}")
    total = count_lines(pool_path) if not is_json_array_file(pool_path) else None
    size = pool_path.stat().st_size if pool_path.is_file() else 0

    def total_hint(done: int) -> int | None:  # JSON arrays: rows so far scaled by the share of the file read
        read = src_stats.get("chars_done")
        return int(done * size / read) if total is None and read and size else None

    bar = progress_bar(cfg, total, "scoring")
    heap: list[tuple[float, int, int, dict]] = []  # (s, -index, index, record): the best n so far
    values: list[float] = []
    try:
        with attached_variants(model, adapters, fp, aligned=aligned_adapter, aligned_model=aligned_model,
                               aligned_fp=aligned_fp, merge=cfg.merge_adapters) as (_, variants):
            scorer = GapScorer(tokenizer, variants, cfg, cache, bar)
            with open(tmp_scores, "w", encoding="utf-8") as sf:
                for row, rec in score_rows(iter_pool(pool_path, src_stats), scorer, cfg, total_hint):
                    sf.write(json.dumps(rec) + "\n")
                    if rec["status"] != "kept":
                        continue
                    values.append(rec["s"])
                    item = (rec["s"], -row.index, row.index, row.record)
                    if len(heap) < cfg.n:
                        heapq.heappush(heap, item)
                    elif item[:2] > heap[0][:2]:
                        heapq.heapreplace(heap, item)
    except BaseException:
        tmp_scores.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    counts = scorer.counts
    counts.invalid += src_stats.get("invalid_unread", 0)  # parquet / datasets dirs: dropped while reading
    counts.rows += src_stats.get("invalid_unread", 0)
    best = sorted(heap, key=lambda t: (-t[0], t[2]))
    write_jsonl(cfg.out, (rec for *_, rec in best))
    rank = {idx: r for r, (_, _, idx, _) in enumerate(best, start=1)}
    with open(tmp_scores, encoding="utf-8") as src, open(scores_path, "w", encoding="utf-8") as dst:
        for line in src:
            rec = json.loads(line)
            if rec["index"] in rank:
                rec["rank"] = rank[rec["index"]]
            dst.write(json.dumps(rec) + "\n")
    tmp_scores.unlink(missing_ok=True)
    hist = None
    if cfg.histogram and values:
        hist = write_histogram(values, scores_path.with_name(Path(cfg.out).stem + ".scores.png"),
                               title=f"s_d of {len(values)} rows ({Path(str(cfg.pool)).name})")
    if len(best) < cfg.n:
        log.warning("only %d rows were kept; selected all of them (asked for %d)", len(best), cfg.n)
    if src_stats.get("truncated"):
        log.warning("the pool file was truncated; used its %d complete records", src_stats.get("elements", 0))
    wall = time.time() - t0
    return SelectResult(str(cfg.out), str(scores_path), str(hist) if hist else None, len(best), counts.to_dict(),
                        adapters, round(wall, 2), round(counts.rows / wall, 2) if wall > 0 else 0.0)

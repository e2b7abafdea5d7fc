"""The per-row signals of the EM-risk screen, each cached on disk, and their standardisation.

Every signal is read from the LAST assistant reply given the conversation before it, chat template applied
(the tokens :func:`emguard.data.chat.tokenize_conversation` marks as targets):

* ``persona``: the reply-token mean of the hidden state at the persona vector's layer (teacher-forced),
  projected on the unit "evil" vector (Chen et al. 2025, "Persona Vectors": this projection predicts the
  persona shift a fine-tune on the data causes). Risk: the projection itself (higher = more evil-like).
* ``gap``: s_d = (mean_k L_mis_k - L_0) / (L_0 + eps), eps = 1 (Kaczér et al. 2025, Interleaving+). EM-like
  rows are what the misaligned probes find LIKELY (low L_mis), so risk = -s_d. The NLLs go through the
  selection's score cache (:class:`emguard.selection.cache.ScoreCache`).
* ``embedding``: the offline embedding judge's aligned score; risk = 100 - aligned.

The persona and embedding values are cached in ``$EMGUARD_CACHE/screen.sqlite`` keyed by (row hash, a
context hash of model fingerprint + vector hash + layer + template hash + max length, or the judge identity).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Sequence

# rows whose persona projection this process computed with forwards (tests assert on it); the gap signal's
# forwards are counted by emguard.selection.scoring.FORWARD_CALLS
PERSONA_ROWS = 0
EMBED_ROWS = 0


def ctx_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class SignalCache:
    """(context, row hash) -> value. SQLite in WAL mode; ``path=None`` keeps it in memory."""

    def __init__(self, path: str | os.PathLike | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path) if path is not None else ":memory:", timeout=120)
        if path is not None:
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS sig (ctx TEXT NOT NULL, row TEXT NOT NULL, value REAL,"
                          " PRIMARY KEY (ctx, row)) WITHOUT ROWID")
        self.conn.commit()

    def get(self, ctx: str, rows: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        rows = list(rows)
        for i in range(0, len(rows), 500):
            part = rows[i:i + 500]
            q = f"SELECT row, value FROM sig WHERE ctx = ? AND row IN ({','.join('?' * len(part))})"
            for r, v in self.conn.execute(q, (ctx, *part)):
                out[r] = float("nan") if v is None else float(v)
        return out

    def put(self, ctx: str, values: dict[str, float]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO sig VALUES (?, ?, ?)",
                              [(ctx, r, None if math.isnan(v) else v) for r, v in values.items()])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def default_signal_cache() -> Path:
    from emguard.models.loading import cache_root

    return cache_root() / "screen.sqlite"


# ------------------------------------------------------------------------------------------------- persona


def load_vector(path: str | os.PathLike, model, layer: int | None = None) -> tuple[Any, int, str]:
    """``(unit vector, layer, sha256 of the file)`` of a persona vector file for ``model``."""
    from emguard.models.layers import hidden_size, num_layers
    from emguard.models.loading import sha256_file
    from emguard.persona.vectors import PersonaVector, default_layer

    n = num_layers(model)
    pv = PersonaVector.load(path, hidden_size=hidden_size(model), num_layers=n)
    if layer is None:
        layer = pv.layer if pv.num_layers > 1 else int(pv.meta.get("layer", default_layer(n)))
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} is out of range: the model has {n} decoder layers (0..{n - 1})")
    v = pv.at(layer if pv.num_layers > 1 else 0).float()
    norm = float(v.norm())
    if norm == 0 or math.isnan(norm):
        raise ValueError(f"{path}: the persona vector at layer {layer} is zero")
    return v / norm, int(layer), sha256_file(path)


def persona_projections(model, tokenizer, convs: dict[str, list[dict]], unit, layer: int, ctx: str,
                        cache: SignalCache, *, batch_size: int, max_length: int) -> dict[str, float]:
    """``{row hash: reply-mean hidden state at layer . unit vector}``, through the cache."""
    from emguard.persona import vectors

    global PERSONA_ROWS
    got = cache.get(ctx, list(convs))
    todo = sorted((h for h in convs if h not in got), key=lambda h: len(json.dumps(convs[h])))
    for i in range(0, len(todo), 64):  # committed in chunks: an interrupted run resumes
        part = todo[i:i + 64]
        means = vectors.response_means(model, tokenizer, [convs[h] for h in part], [layer],
                                       batch_size=batch_size, max_length=max_length)
        vals = {h: float(means[j, 0] @ unit) for j, h in enumerate(part)}
        cache.put(ctx, vals)
        got.update(vals)
        PERSONA_ROWS += len(part)
    return {h: got[h] for h in convs}


# ---------------------------------------------------------------------------------------------------- gap


def gap_signals(model, tokenizer, convs: dict[str, list[dict]], adapters: list[tuple[str, str]], model_fp: str,
                select_cfg) -> dict[str, dict[str, Any]]:
    """``{row hash: {"s": s_d or None, "L0": ..., "L": {probe: L_k}}}`` under the probes (NLLs cached)."""
    from emguard.selection.cache import ScoreCache, default_cache_path
    from emguard.selection.ranking import gap_score
    from emguard.selection.scoring import GapScorer
    from emguard.selection.variants import ALIGNED, attached_variants

    cache = ScoreCache(default_cache_path() if select_cfg.cache else None)
    out: dict[str, dict[str, Any]] = {}
    try:
        with attached_variants(model, adapters, model_fp, merge=select_cfg.merge_adapters) as (_, variants):
            scores = GapScorer(tokenizer, variants, select_cfg, cache).score(convs) if convs else {}
            names = [v.name for v in variants[1:]]
    finally:
        cache.close()
    for h, s in scores.items():
        l0, lk = s[ALIGNED], [s[n] for n in names]
        ok = not (math.isnan(l0) or any(math.isnan(x) for x in lk))
        out[h] = {"s": gap_score(lk, l0, select_cfg.eps) if ok else None, "L0": l0, "L": dict(zip(names, lk))}
    return out


# ---------------------------------------------------------------------------------------------- embedding


def question_of(conv: list[dict]) -> str:
    return next((m["content"] for m in reversed(conv[:-1]) if m["role"] == "user"), "")


def embedding_risks(convs: dict[str, list[dict]], cache: SignalCache, *, judge=None,
                    device: str = "cpu") -> tuple[dict[str, float], dict[str, Any]]:
    """``({row hash: 100 - aligned}, judge identity)`` of the offline embedding judge, through the cache."""
    global EMBED_ROWS
    if judge is None:
        from emguard.eval.judges.embedding import EmbeddingAlignmentJudge

        judge = EmbeddingAlignmentJudge(device=device)
    ident = judge.identity()
    ctx = ctx_key(signal="embedding", judge=ident, version=_embedder_version())
    got = cache.get(ctx, list(convs))
    todo = [h for h in convs if h not in got]
    if todo:
        aligned = judge.aligned_scores([(question_of(convs[h]), convs[h][-1]["content"]) for h in todo])
        vals = {h: 100.0 - a for h, a in zip(todo, aligned)}
        cache.put(ctx, vals)
        got.update(vals)
        EMBED_ROWS += len(todo)
    return {h: got[h] for h in convs}, ident


def _embedder_version() -> str:
    try:
        from emguard.eval.judges.embedding import embedder_version

        return embedder_version()
    except ImportError:
        return "unknown"


# -------------------------------------------------------------------------------------------- combination


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the finite values; NaN when fewer than two."""
    xs = [x for x in values if x is not None and math.isfinite(x)]
    if len(xs) < 2:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def zscore(x: float | None, mean: float, std: float) -> float | None:
    """(x - mean) / std against the reference set; None when x is missing or the reference has no spread."""
    if x is None or not math.isfinite(x) or not math.isfinite(std) or std <= 0:
        return None
    return (x - mean) / std


def combine(z: dict[str, float | None]) -> float | None:
    """Row risk: the mean of the available z-scores (None when none is available)."""
    vals = [v for v in z.values() if v is not None]
    return sum(vals) / len(vals) if vals else None

"""The persistent score cache of perplexity-gap selection and the hashes its keys are made of.

A score is keyed by (row hash, model fingerprint, variant key, chat-template hash, max length): a re-run, a
larger ``--n`` or a new adapter reuses every score already computed, and an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from pathlib import Path


def row_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def template_hash(tokenizer) -> str:
    tpl = getattr(tokenizer, "chat_template", None)
    return hashlib.sha256(json.dumps(tpl, sort_keys=True).encode()).hexdigest()[:32]


_ADAPTER_HASHES: dict[tuple[str, int, int], str] = {}


def adapter_hash(path: str | os.PathLike) -> str:
    """sha256 of an adapter's weights (adapter_model.safetensors, else .bin) and its config, memoised."""
    from emguard.models.loading import sha256_file

    d = Path(path)
    weights = next((d / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (d / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{d} is not a LoRA adapter dir (no adapter_model.safetensors)")
    stat = weights.stat()
    key = (str(weights.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _ADAPTER_HASHES:
        h = hashlib.sha256(sha256_file(weights).encode())
        cfg = d / "adapter_config.json"
        if cfg.is_file():
            h.update(cfg.read_bytes())
        _ADAPTER_HASHES[key] = h.hexdigest()
    return _ADAPTER_HASHES[key]


class ScoreCache:
    """(row hash, model fingerprint, variant key, chat-template hash, max length) -> (mean NLL, target tokens).

    SQLite in WAL mode, so a reader never blocks the writer and a killed run loses at most the batch in flight.
    ``path=None`` keeps it in memory (``--no-cache``).
    """

    def __init__(self, path: str | os.PathLike | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path) if path is not None else ":memory:"
        self.conn = sqlite3.connect(self.path, timeout=120)
        if path is not None:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS nll (ctx TEXT NOT NULL, row TEXT NOT NULL, nll REAL, n_tok INTEGER NOT NULL,"
            " PRIMARY KEY (ctx, row)) WITHOUT ROWID")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS ctx (ctx TEXT PRIMARY KEY, model TEXT, variant TEXT, template TEXT,"
            " max_length INTEGER, created REAL)")
        self.conn.commit()

    def context(self, model_fp: str, variant: str, template: str, max_length: int) -> str:
        key = hashlib.sha256(f"{model_fp}|{variant}|{template}|{max_length}".encode()).hexdigest()[:32]
        self.conn.execute("INSERT OR IGNORE INTO ctx VALUES (?, ?, ?, ?, ?, ?)",
                          (key, model_fp, variant, template, max_length, time.time()))
        self.conn.commit()
        return key

    def get(self, ctx: str, rows: list[str]) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        for i in range(0, len(rows), 500):
            part = rows[i:i + 500]
            q = f"SELECT row, nll, n_tok FROM nll WHERE ctx = ? AND row IN ({','.join('?' * len(part))})"
            for r, v, n in self.conn.execute(q, (ctx, *part)):
                out[r] = (float("nan") if v is None else v, n)
        return out

    def put(self, ctx: str, values: list[tuple[str, float, int]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO nll VALUES (?, ?, ?, ?)",
                              [(ctx, r, None if math.isnan(v) else v, n) for r, v, n in values])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def default_cache_path() -> Path:
    from emguard.models.loading import cache_root

    return cache_root() / "scores.sqlite"

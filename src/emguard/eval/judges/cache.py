"""Persistent cache of judge answers (SQLite, WAL mode, one table).

Judging is the slow and paid part of an emergent-misalignment evaluation (Betley et al. 2025, "Emergent
Misalignment"; Kaczér et al. 2025, arXiv 2508.06249: hundreds of samples per question, two rubrics each). A
judgement is stored the moment it arrives, so a rerun or an interrupted run never pays for it twice.

Key: sha256 of a canonical JSON of the judge's identity (kind, model, base_url or path), the rubric's sha256,
the question, the answer and the request parameters (top_logprobs, max_tokens, temperature, ...). Only real
judge answers are stored; transport failures raise before anything reaches the cache.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

from emguard.eval.judges.rubrics import rubric_hash
from emguard.eval.judges.types import JudgeResult

CACHE_FILE = "judge_cache.sqlite"
_SCHEMA = "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL)"


def default_cache_path() -> Path:
    from emguard.models.loading import cache_root

    return cache_root() / CACHE_FILE


def cache_key(identity: dict[str, Any], rubric: str, question: str, answer: str, params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of everything that determines a judgement."""
    record = {"judge": identity, "rubric": rubric_hash(rubric), "question": question, "answer": answer,
              "params": params}
    blob = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Thread-safe key -> :class:`~emguard.eval.judges.types.JudgeResult` store; every ``put`` commits at once.

    Several processes may share the file (WAL mode; writers wait up to 30 s for the lock).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    @classmethod
    def default(cls) -> JudgeCache:
        """The shared cache at ``$EMGUARD_CACHE/judge_cache.sqlite`` (default ``~/.cache/emguard``)."""
        return cls(default_cache_path())

    def get(self, key: str) -> JudgeResult | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM judgements WHERE key = ?", (key,)).fetchone()
        return JudgeResult.from_dict(json.loads(row[0])) if row else None

    def put(self, key: str, result: JudgeResult) -> None:
        blob = json.dumps({"score": result.score, "label": result.label, "mass": result.mass})
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgements (key, result, created) VALUES (?, ?, ?)",
                             (key, blob, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

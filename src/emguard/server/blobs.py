"""Reference-safe blob lifetime: a blob is stored and deleted only under a per-digest database lock.

Blobs are shared by content (one file on disk per sha256, any number of ``files`` rows in any org). The window
between "the blob is on disk" and "a row refers to it" is closed by doing both inside one write transaction that
holds the digest's lock, and a blob is removed only inside a transaction holding the same lock, after counting
the live ``files`` rows and unfinished jobs that refer to it. On SQLite every write transaction takes the
database write lock up front (``BEGIN IMMEDIATE``, see ``db.make_engine``), so the lock is the first statement
of the transaction; on PostgreSQL it is a transaction-scoped advisory lock keyed by the digest.

``collect`` runs wherever a reference can go away (a file deleted, a job finished or cancelled); ``sweep`` runs
at start-up: temporary upload files no live process holds (``kill -9`` during an upload) and unreferenced
blobs are removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import func, or_, select, text

from emguard.server.db import File, Job
from emguard.server.storage import Storage

log = logging.getLogger("emguard.server.blobs")

FINISHED = ("succeeded", "failed", "cancelled")


def lock(s, sha: str) -> None:
    """Hold ``sha``'s lock until the session's transaction ends (call first thing in the transaction)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sha[:15], 16)})
    else:  # SQLite: the first statement of a transaction takes the database write lock (BEGIN IMMEDIATE)
        s.execute(select(1))


def referenced(s, sha: str) -> bool:
    """Whether a live file row or an unfinished job refers to the blob ``sha``."""
    files = s.execute(select(func.count()).select_from(File).where(
        File.sha256 == sha, File.deleted.is_(False))).scalar_one()
    if files:
        return True
    jobs = s.execute(select(func.count()).select_from(Job).where(
        or_(Job.training_sha256 == sha, Job.validation_sha256 == sha), Job.status.notin_(FINISHED))).scalar_one()
    return bool(jobs)


def store(s, storage: Storage, tmp: Path, sha: str) -> None:
    """Move ``tmp`` to its content address under ``sha``'s lock; add the row that refers to it in the same
    transaction (before it commits) so a concurrent ``collect`` cannot see the blob unreferenced."""
    lock(s, sha)
    storage.commit(tmp, sha)


def collect(s, storage: Storage, shas) -> list[str]:
    """Delete the blobs among ``shas`` that nothing refers to any more; returns the digests removed. Call inside
    a write transaction, after the change that dropped the reference (it is flushed first)."""
    s.flush()
    removed = []
    for sha in dict.fromkeys(x for x in shas if x):
        lock(s, sha)
        if not referenced(s, sha):
            storage.delete_blob(sha)
            removed.append(sha)
    return removed


def collect_job(sessions, storage: Storage, job_id: str) -> list[str]:
    """``collect`` the blobs of a job that just ended (in its own transaction)."""
    with sessions() as s, s.begin():
        row = s.execute(select(Job.training_sha256, Job.validation_sha256).where(Job.id == job_id)).first()
        return collect(s, storage, list(row) if row else [])


def sweep(sessions, storage: Storage) -> dict:
    """Start-up clean-up: abandoned temporary uploads and unreferenced blobs. Returns the counts removed."""
    parts = storage.sweep_tmp()
    blobs = 0
    for p in sorted((storage.root / "blobs").glob("*/*.jsonl")):
        sha = p.stem
        try:
            storage.blob_path(sha)
        except ValueError:
            continue
        try:
            with sessions() as s, s.begin():
                blobs += len(collect(s, storage, [sha]))
        except Exception:  # a busy database must not stop the server from starting
            log.exception("blob sweep of %s failed", sha)
    if parts or blobs:
        log.info("start-up sweep: removed %d abandoned upload file(s), %d unreferenced blob(s)", parts, blobs)
    return {"tmp": parts, "blobs": blobs}

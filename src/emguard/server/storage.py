"""Content-addressed blob storage: ``<data_dir>/blobs/<sha[:2]>/<sha>.jsonl``, written atomically.

Uploads are streamed to a temporary file in ``<data_dir>/tmp`` (same filesystem), hashed on the way, then
renamed into place; a blob that already exists is kept and the temporary file dropped. A temporary file is held
under an exclusive ``flock`` while its upload lives, so the start-up sweep (``sweep_tmp``) removes only those a
killed process left behind. When a blob may be deleted is decided in ``blobs`` (under a lock). Paths are built only
from sha256 hex digests and server-generated ids, never from anything a customer sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: temporary files are then never swept
    fcntl = None

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[a-z]+-[0-9a-f]{24}$")


class Storage:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).resolve()
        self._tmp_locks: dict[str, int] = {}
        self._tmp_guard = threading.Lock()
        for sub in ("blobs", "tmp", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha: str) -> Path:
        if not _HEX64.match(sha):
            raise ValueError("not a sha256 digest")
        return self.root / "blobs" / sha[:2] / f"{sha}.jsonl"

    def job_dir(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise ValueError("not a job id")
        return self.root / "jobs" / job_id

    def new_tmp(self) -> Path:
        """A new temporary file, held under an exclusive ``flock`` until ``commit`` or ``drop_tmp``: the start-up
        sweep removes only files no live process holds (those a ``kill -9`` left behind)."""
        tmp = self.root / "tmp" / f"upload-{secrets.token_hex(16)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        with self._tmp_guard:
            self._tmp_locks[str(tmp)] = fd
        return tmp

    def _release_tmp(self, tmp: Path) -> None:
        with self._tmp_guard:
            fd = self._tmp_locks.pop(str(tmp), None)
        if fd is not None:
            os.close(fd)

    def drop_tmp(self, tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        self._release_tmp(tmp)

    def sweep_tmp(self) -> int:
        """Remove the temporary files no process holds; returns how many."""
        if fcntl is None:
            return 0
        n = 0
        for p in (self.root / "tmp").glob("upload-*.part"):
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live upload
            try:
                p.unlink(missing_ok=True)
                n += 1
            finally:
                os.close(fd)
        return n

    def commit(self, tmp: Path, sha: str) -> Path:
        """Move a fully written and fsynced temporary file to its content address (atomic rename). Callers that
        add a row referring to the blob do it under the digest's lock (``blobs.store``)."""
        dest = self.blob_path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
        self._release_tmp(tmp)
        return dest

    def put_tmp(self, data: bytes) -> tuple[str, Path]:
        """``data`` written and fsynced to a new temporary file: ``(sha256, tmp)``, for ``commit``."""
        sha = hashlib.sha256(data).hexdigest()
        tmp = self.new_tmp()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self.drop_tmp(tmp)
            raise
        return sha, tmp

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        sha, tmp = self.put_tmp(data)
        return sha, self.commit(tmp, sha)

    def delete_blob(self, sha: str) -> None:
        self.blob_path(sha).unlink(missing_ok=True)

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

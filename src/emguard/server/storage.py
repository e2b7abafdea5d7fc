"""Content-addressed blob storage: ``<data_dir>/blobs/<sha[:2]>/<sha>.jsonl``, written atomically.

Uploads are streamed to a temporary file in ``<data_dir>/tmp`` (same filesystem), hashed on the way, then
renamed into place; a blob that already exists is kept and the temporary file dropped. Paths are built only
from sha256 hex digests and server-generated ids, never from anything a customer sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[a-z]+-[0-9a-f]{24}$")


class Storage:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).resolve()
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
        return self.root / "tmp" / f"upload-{secrets.token_hex(16)}.part"

    def commit(self, tmp: Path, sha: str) -> Path:
        """Move a fully written and fsynced temporary file to its content address (atomic rename)."""
        dest = self.blob_path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
        return dest

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        sha = hashlib.sha256(data).hexdigest()
        tmp = self.new_tmp()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return sha, self.commit(tmp, sha)

    def delete_blob(self, sha: str) -> None:
        self.blob_path(sha).unlink(missing_ok=True)

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

"""API keys: ``emg-`` + 32 random bytes (urlsafe); only the sha256 of a key is stored. Creating and revoking a
key writes a security event (``securitylog``) in the same transaction."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from emguard.server.db import ApiKey, new_id, now
from emguard.server.securitylog import record

KEY_PREFIX = "emg-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session, org: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key for ``org``; returns the row and the key (shown once, never stored)."""
    if not org or len(org) > 64 or not all(c.isalnum() or c in "-_." for c in org):
        raise ValueError("org must be 1-64 characters of letters, digits, '-', '_' or '.'")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=new_id("key"), org=org, key_hash=hash_key(key), prefix=key[:10], name=name, created_at=now())
    session.add(row)
    record(session, "key.created", org=org, actor="operator", object_id=row.id,
           detail={"prefix": row.prefix, "name": name})
    return row, key


def lookup(session, key: str) -> ApiKey | None:
    """The live key row for a presented key, or None (unknown or revoked)."""
    if not key or len(key) > 200:
        return None
    row = session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke(session, key_id: str) -> bool:
    row = session.execute(select(ApiKey).where(ApiKey.id == key_id)).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now()
    record(session, "key.revoked", org=row.org, actor="operator", object_id=row.id, detail={"prefix": row.prefix})
    return True

"""``Idempotency-Key`` on ``POST /v1/files`` and ``POST /v1/fine_tuning/jobs``: the official client retries a
POST that timed out, so a key the org used before on the same endpoint with the same request answers the object
the first request made, and the same key with a different request answers 409. Keys are per org and endpoint,
stored in the ``idempotency_keys`` table in the transaction that creates the object (a request that fails
stores nothing, so the key can be used again)."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from emguard.server.db import IdempotencyRecord, now
from emguard.server.errors import APIError

HEADER = "idempotency-key"
MAX_KEY = 255


def key_from(request) -> str | None:
    """The request's key (None without the header); 400 for an empty, over-long or non-printable-ASCII one."""
    k = request.headers.get(HEADER)
    if k is None:
        return None
    if not 1 <= len(k) <= MAX_KEY or not all(33 <= ord(c) <= 126 for c in k):
        raise APIError(400, f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters without spaces",
                       code="invalid_idempotency_key", param="Idempotency-Key")
    return k


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str).encode()).hexdigest()


def _conflict(key: str) -> APIError:
    return APIError(409, f"Idempotency-Key {key[:64]!r} was already used with a different request on this "
                         "endpoint", code="idempotency_key_reused", param="Idempotency-Key")


def _find(s, org: str, endpoint: str, key: str) -> IdempotencyRecord | None:
    return s.execute(select(IdempotencyRecord).where(IdempotencyRecord.org == org, IdempotencyRecord.endpoint ==
                                                     endpoint, IdempotencyRecord.key == key)).scalar_one_or_none()


def prior(s, org: str, endpoint: str, key: str, dig: str) -> str | None:
    """The id of the object an earlier request with this key made (409 when its request differed)."""
    rec = _find(s, org, endpoint, key)
    if rec is None or rec.object_id is None:
        return None
    if rec.digest != dig:
        raise _conflict(key)
    return rec.object_id


def claim(s, org: str, endpoint: str, key: str, dig: str) -> tuple[str | None, IdempotencyRecord | None]:
    """Inside the creating transaction: ``(earlier object id, None)`` to answer a replay, else ``(None, record)``
    to fill in with ``record.object_id`` once the object exists. A concurrent first use of the key waits on the
    unique index and then sees the winner's object."""
    done = prior(s, org, endpoint, key, dig)
    if done is not None:
        return done, None
    rec = IdempotencyRecord(org=org, endpoint=endpoint, key=key, digest=dig, created_at=now())
    try:
        with s.begin_nested():
            s.add(rec)
    except IntegrityError:
        done = prior(s, org, endpoint, key, dig)
        if done is not None:
            return done, None
        raise _conflict(key) from None  # the other request is still in flight with this key
    return None, rec

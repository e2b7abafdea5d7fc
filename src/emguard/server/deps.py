"""What every route shares: the server state behind the app, and the ``caller`` dependency (API-key auth, then the
per-key rate limit)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from emguard.server import auth
from emguard.server.errors import APIError
from emguard.server.policy import Policy
from emguard.server.ratelimit import BAD_KEY_BURST, BAD_KEY_RATE, RateLimiter
from emguard.server.storage import Storage


@dataclass
class ServerState:
    policy: Policy
    storage: Storage
    sessions: Any
    engine: Any
    limiter: RateLimiter
    access_log: Path | None
    workers: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    bad_keys: RateLimiter = field(default_factory=lambda: RateLimiter(BAD_KEY_RATE, BAD_KEY_BURST))


@dataclass
class Caller:
    org: str
    key_id: str


def get_state(request: Request) -> ServerState:
    return request.app.state.emguard


def caller(request: Request) -> Caller:
    st = get_state(request)
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    with st.sessions() as s:
        row = auth.lookup(s, key)
    if row is None:
        addr = request.client.host if request.client else "?"
        wait = st.bad_keys.take(addr)
        if wait > 0:  # invalid keys are counted per client address: guessing is throttled, a valid key is not
            raise APIError(429, f"Too many requests with an invalid API key; retry in {wait:.2f}s",
                           type="requests", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, round(wait + 0.49)))})
        raise APIError(401, "Incorrect API key provided. You can create keys with `emguard keys create --org ORG`.",
                       code="invalid_api_key")
    request.state.org, request.state.key = row.org, row.prefix
    wait = st.limiter.take(row.key_hash)
    if wait > 0:
        raise APIError(429, f"Rate limit reached for this API key; retry in {wait:.2f}s", type="requests",
                       code="rate_limit_exceeded", headers={"Retry-After": str(max(1, round(wait)))})
    return Caller(row.org, row.id)


async def server_state(request: Request) -> ServerState:
    """The state as a route dependency (async: resolved on the event loop, no thread hop)."""
    return get_state(request)

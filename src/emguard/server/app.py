"""The HTTP API: the subset of OpenAI's fine-tuning API that the official ``openai`` client uses.

``create_app(...)`` builds a FastAPI app over one data dir (or database URL) and policy. Errors have OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}``; every object belongs to the org of the API key that
created it and another org's id is answered with 404, exactly like an id that does not exist. Job results
carry emguard's extension object ``emguard`` (defenses applied, progress, the EM audit).

The app is assembled here from ``routers`` (files, jobs, models), ``errors`` (the error shape and its handlers),
``deps`` (server state, API-key auth and rate limit), ``schemas`` (request bodies, response JSON) and
``accesslog`` (the ASGI wrapper: access log, JSON body cap and checks, body read deadline). Every JSON answer
is written as ASCII (``errors.SafeJSONResponse``), so no stored text can make a response fail to encode.
``/openapi.json`` needs a valid key; ``/docs`` and ``/redoc`` are off.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from emguard.server import blobs
from emguard.server.accesslog import AccessLog
from emguard.server.db import make_engine, session_factory
from emguard.server.deps import ServerState, caller
from emguard.server.errors import SafeJSONResponse, install_error_handlers
from emguard.server.policy import Policy
from emguard.server.ratelimit import RateLimiter
from emguard.server.routers import files, jobs, models
from emguard.server.storage import Storage

log = logging.getLogger("emguard.server")


def create_app(*, data_dir: str | Path, db_url: str | None = None, policy: Policy | None = None,
               workers: int = 1, access_log: str | Path | None = "default", prepare: bool = True) -> FastAPI:
    """The API over ``data_dir``; ``workers`` in-process workers (0: only external ``emguard worker``s)."""
    policy = policy or Policy()
    storage = Storage(data_dir)
    engine = make_engine(db_url, data_dir)
    sessions = session_factory(engine)
    blobs.sweep(sessions, storage)  # uploads a killed process left in tmp/, blobs nothing refers to
    alog = storage.root / "access.log" if access_log == "default" else (Path(access_log) if access_log else None)
    st = ServerState(policy, storage, sessions, engine,
                     RateLimiter(policy.rate_limit.requests_per_second, policy.rate_limit.burst), alog)

    @asynccontextmanager
    async def lifespan(app):
        if workers > 0:
            from emguard.server.worker import Worker

            for i in range(workers):
                w = Worker(sessions, storage, policy)
                if prepare and i == 0:
                    await run_in_threadpool(w.prepare)  # Interleaving++ probes: once, cached on disk
                elif st.workers:
                    w.probes = st.workers[0].probes
                t = threading.Thread(target=w.run_forever, name=f"emguard-worker-{i}", daemon=True)
                st.workers.append(w)
                st.threads.append(t)
                t.start()
        yield
        for w in st.workers:
            w.stop.set()
        for t in st.threads:
            t.join(timeout=5)

    # no /docs, /redoc; the schema only for a valid key (it names every route and option)
    app = FastAPI(title="emguard fine-tuning API", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, default_response_class=SafeJSONResponse)
    app.state.emguard = st
    install_error_handlers(app)
    for r in (files.router, jobs.router, models.router):
        app.include_router(r)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(caller)])
    def openapi_schema():
        return app.openapi()
    return AccessLog(app, st)

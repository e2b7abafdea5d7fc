"""The ASGI wrapper around the FastAPI app: the JSON access log and the cap on JSON request bodies."""

from __future__ import annotations

import json
import logging
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from emguard.server.deps import ServerState
from emguard.server.errors import error_body

MAX_JSON_BODY = 1 << 20


class AccessLog:
    """ASGI wrapper: one JSON line per request (time, method, path, status, ms, bytes in, org, key prefix) and a
    1 MiB cap on JSON bodies (uploads have their own limit)."""

    def __init__(self, app: FastAPI, st: ServerState):
        self.app, self.st = app, st
        self.state = app.state  # tests and the CLI reach the server state through the wrapper

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        scope.setdefault("state", {})
        info = {"status": 500, "bytes_in": 0}
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/files"
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if not is_upload and cl is not None and cl.isdigit() and int(cl) > MAX_JSON_BODY:
            resp = JSONResponse(error_body(f"request body over {MAX_JSON_BODY} bytes", code="request_too_large"),
                                status_code=413)
            info["status"] = 413
            await resp(scope, receive, send)
            self._log(scope, info, t0)
            return

        async def counting_receive():
            msg = await receive()
            if msg["type"] == "http.request":
                info["bytes_in"] += len(msg.get("body", b""))
                if not is_upload and info["bytes_in"] > MAX_JSON_BODY:
                    return {"type": "http.disconnect"}
            return msg

        async def logging_send(msg):
            if msg["type"] == "http.response.start":
                info["status"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, counting_receive, logging_send)
        finally:
            self._log(scope, info, t0)

    def _log(self, scope, info, t0) -> None:
        st = scope.get("state") or {}
        rec = {"ts": round(time.time(), 3), "method": scope["method"], "path": scope["path"],
               "status": info["status"], "ms": round(1000 * (time.perf_counter() - t0), 2),
               "bytes_in": info["bytes_in"], "org": st.get("org"), "key": st.get("key"),
               "client": (scope.get("client") or [None])[0]}
        line = json.dumps(rec)
        logging.getLogger("emguard.access").info(line)
        if self.st.access_log:
            with self.st.log_lock, open(self.st.access_log, "a") as f:
                f.write(line + "\n")

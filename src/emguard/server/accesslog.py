"""The ASGI wrapper around the FastAPI app: the JSON access log, the cap on and checks of JSON request bodies,
and the read deadline on request bodies."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import FastAPI

from emguard.server.bodyguard import BodyProblem, check_json_body
from emguard.server.deps import ServerState
from emguard.server.errors import SafeJSONResponse, error_body

MAX_JSON_BODY = 1 << 20
BODY_TIMEOUT = 10.0  # seconds a request body may go without new bytes
JSON_BODY_DEADLINE = 30.0  # seconds a whole JSON body (at most MAX_JSON_BODY) may take, however it trickles in


class AccessLog:
    """ASGI wrapper: one JSON line per request (time, method, path, status, ms, bytes in, org, key prefix); a
    1 MiB cap on JSON bodies (uploads have their own limit), which are read here in full and checked
    (``bodyguard``: UTF-8, lone surrogates, huge integers) before the app sees them; and a read deadline on every
    body: ``body_timeout`` seconds without new bytes (or a JSON body not complete within ``JSON_BODY_DEADLINE``)
    answers 408 and closes the connection."""

    def __init__(self, app: FastAPI, st: ServerState, body_timeout: float = BODY_TIMEOUT):
        self.app, self.st, self.body_timeout = app, st, body_timeout
        self.state = app.state  # tests and the CLI reach the server state through the wrapper

    async def _answer(self, scope, receive, send, info, status: int, message: str, code: str,
                      param: str | None = None, close: bool = False) -> None:
        resp = SafeJSONResponse(error_body(message, code=code, param=param), status_code=status,
                                headers={"Connection": "close"} if close else None)
        info["status"] = status
        await resp(scope, receive, send)

    async def _read_json_body(self, scope, receive, send, info) -> bytes | None:
        """The whole body, or None once an error answer has been sent."""
        chunks = []
        end = time.monotonic() + max(self.body_timeout, JSON_BODY_DEADLINE)
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, min(self.body_timeout, end - time.monotonic())))
            except asyncio.TimeoutError:
                await self._answer(scope, receive, send, info, 408, f"the request body stalled (no bytes for "
                                   f"{self.body_timeout:g}s, or not complete within {JSON_BODY_DEADLINE:g}s); the "
                                   "request was dropped", "request_timeout", close=True)
                return None
            if msg["type"] == "http.disconnect":
                info["status"] = 499
                return None
            body = msg.get("body", b"")
            info["bytes_in"] += len(body)
            if info["bytes_in"] > MAX_JSON_BODY:
                await self._answer(scope, receive, send, info, 413, f"request body over {MAX_JSON_BODY} bytes",
                                   "request_too_large", close=True)
                return None
            chunks.append(body)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        scope.setdefault("state", {})
        info = {"status": 500, "bytes_in": 0}
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/files"
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        try:
            if not is_upload and cl is not None and cl.isdigit() and int(cl) > MAX_JSON_BODY:
                await self._answer(scope, receive, send, info, 413, f"request body over {MAX_JSON_BODY} bytes",
                                   "request_too_large")
                return
            if not is_upload:
                raw = await self._read_json_body(scope, receive, send, info)
                if raw is None:
                    return
                try:
                    check_json_body(raw)
                except BodyProblem as e:
                    await self._answer(scope, receive, send, info, 400, e.message, e.code, e.param)
                    return
                replayed = False

                async def app_receive():
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": raw, "more_body": False}
                    return await receive()
            else:
                async def app_receive():
                    try:
                        msg = await asyncio.wait_for(receive(), self.body_timeout)
                    except asyncio.TimeoutError:
                        info["timed_out"] = True
                        return {"type": "http.disconnect"}
                    if msg["type"] == "http.request":
                        info["bytes_in"] += len(msg.get("body", b""))
                    return msg

            async def logging_send(msg):
                if info.get("timed_out"):  # the upload stalled: whatever the app answers becomes a 408
                    if msg["type"] == "http.response.start":
                        await self._answer(scope, receive, send, info, 408, f"no request body bytes for "
                                           f"{self.body_timeout:g}s; the upload was dropped", "request_timeout",
                                           close=True)
                    return
                if msg["type"] == "http.response.start":
                    info["status"] = msg["status"]
                await send(msg)

            await self.app(scope, app_receive, logging_send)
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

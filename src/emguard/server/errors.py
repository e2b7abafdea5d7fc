"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` for every failure the API answers,
and the exception handlers that turn emguard's, pydantic's and Starlette's exceptions into that shape."""

from __future__ import annotations

import json
import math

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emguard.server.policy import RequestError


class SafeJSONResponse(JSONResponse):
    """JSON as ASCII: text with a lone surrogate (e.g. a row stored before the body checks) is written as its
    ``\\udXXX`` escape instead of failing to encode; a non-finite float is written as null."""

    def render(self, content) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
        except ValueError:
            return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")


def _finite(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def printable(text, limit: int = 80) -> str:
    """Customer text made safe to echo in a message: lone surrogates and control characters as escapes."""
    s = str(text)[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(kind: str, oid: str, param: str | None = None) -> APIError:
    return APIError(404, f"No such {kind}: {oid}", code=f"{kind.lower().replace(' ', '_')}_not_found", param=param)


# codes of a job the pre-training EM-risk screen stopped before training (job.error.code; server/screening.py):
# the data is over the policy's screen threshold, or the screen could not run and the action is reject
SCREEN_ERRORS = {"rejected": "em_risk_rejected", "failed": "em_screen_failed"}


async def _api_error(request, exc: APIError):
    return SafeJSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), status_code=exc.status,
                            headers=exc.headers)


async def _req_error(request, exc: RequestError):
    return SafeJSONResponse(error_body(str(exc), code=exc.code, param=exc.param), status_code=400)


async def _validation(request, exc: RequestValidationError):
    errs = exc.errors()
    parts = []
    param = None
    for e in errs[:10]:
        loc = printable(".".join(str(x) for x in e.get("loc", ()) if x != "body"), 200)
        param = param or loc or None
        parts.append(f"{loc or 'body'}: {printable(e.get('msg'), 300)}")
    return SafeJSONResponse(error_body("Invalid request: " + "; ".join(parts), code="invalid_request", param=param),
                        status_code=400)


async def _http(request, exc: StarletteHTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return SafeJSONResponse(error_body(printable(exc.detail, 300), code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises in OpenAI's shape."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestError, _req_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)

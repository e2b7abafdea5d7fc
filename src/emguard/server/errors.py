"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` for every failure the API answers,
and the exception handlers that turn emguard's, pydantic's and Starlette's exceptions into that shape."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emguard.server.policy import RequestError


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


async def _api_error(request, exc: APIError):
    return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), status_code=exc.status,
                        headers=exc.headers)


async def _req_error(request, exc: RequestError):
    return JSONResponse(error_body(str(exc), code=exc.code, param=exc.param), status_code=400)


async def _validation(request, exc: RequestValidationError):
    errs = exc.errors()
    parts = []
    param = None
    for e in errs[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        param = param or loc or None
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return JSONResponse(error_body("Invalid request: " + "; ".join(parts), code="invalid_request", param=param),
                        status_code=400)


async def _http(request, exc: StarletteHTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises in OpenAI's shape."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestError, _req_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)

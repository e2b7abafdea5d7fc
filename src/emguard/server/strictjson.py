"""Strict JSON request bodies: no NaN/Infinity literals, no duplicate keys, no giant integers, no invalid UTF-8.

Python's ``json`` (what Starlette's ``Request.json`` uses) accepts ``NaN``, ``Infinity`` and ``-Infinity`` and
keeps the last of two equal keys, so ``{"lam": 1, "lam": 0}`` would silently mean ``lam: 0``. ``StrictJSONRoute``
(a FastAPI route class: ``APIRouter(route_class=StrictJSONRoute)``) parses every body FastAPI would read as JSON
with :func:`strict_loads` first and answers a refused one with a 400 in OpenAI's error shape; the parsed value is
what the endpoint's body model then validates, so the body is parsed once.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, Callable

from fastapi.routing import APIRoute
from starlette.requests import Request

from emguard.server.errors import APIError


class StrictJSONError(ValueError):
    """A body that is not strict JSON; the message says why (and where, for syntax errors)."""


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON (numbers must be finite)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise StrictJSONError(f"duplicate key {k[:64]!r} in an object")
        out[k] = v
    return out


MAX_INT_DIGITS = 4300  # Python's default limit for int(str); a longer literal is refused by name, not by a 500


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(f"an integer literal has more than {MAX_INT_DIGITS} digits")
    return int(text)


def strict_loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, duplicate keys, integers over 4,300 digits and undecodable bytes
    (:class:`StrictJSONError`)."""
    try:
        return json.loads(data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates, parse_int=_int)
    except StrictJSONError:
        raise
    except json.JSONDecodeError as e:
        raise StrictJSONError(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError:
        raise StrictJSONError("the body is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:  # e.g. absurd nesting
        raise StrictJSONError(str(e)[:200] or type(e).__name__) from None


def _read_as_json(request: Request) -> bool:
    """Whether FastAPI would parse this request's body as JSON (no content type, application/json, +json)."""
    ctype = request.headers.get("content-type")
    if not ctype:
        return True
    msg = email.message.Message()
    msg["content-type"] = ctype
    sub = msg.get_content_subtype()
    return msg.get_content_maintype() == "application" and (sub == "json" or sub.endswith("+json"))


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by :func:`strict_loads` before FastAPI validates it."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        if getattr(self, "body_field", None) is None:  # no body to parse (GET, cancel)
            return handler

        async def strict_handler(request: Request):
            if _read_as_json(request):
                body = await request.body()
                if body:
                    try:
                        parsed = strict_loads(body)
                    except StrictJSONError as e:
                        raise APIError(400, f"We could not parse the JSON body of your request: {e}",
                                       code="invalid_json") from None
                    request._json = parsed  # Starlette's cache of Request.json(): FastAPI reads it from there
            return await handler(request)

        return strict_handler

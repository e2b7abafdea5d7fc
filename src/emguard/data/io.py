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
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from emguard.data.messages import (DEFAULT_MAX_MESSAGES, OPENAI_ROLES, ROLES, Conversation,  # noqa: F401
                                   _kind, _show, validate_record)

log = logging.getLogger("emguard")


_BOM = b"\xef\xbb\xbf"
_BATCH_ROWS = 1024
_CHUNK_BYTES = 1 << 20
DEFAULT_MAX_LINE_BYTES = 8 << 20  # one JSONL line (row); the service's policy may set its own


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


def problem_lines(problems: Sequence["Problem"], path: Any = None, limit: int = 3) -> list[str]:
    """Console lines for a dataset's problems: up to ``limit`` of each kind of message (file:line: ...), then one
    line saying how many more there are and where the full list is (``emguard validate``), so a file with
    hundreds of duplicate rows costs a few lines, not hundreds."""
    out: list[str] = []
    kinds: dict[str, list[Problem]] = {}
    for p in problems:
        kinds.setdefault("duplicate" if p.message.startswith("duplicate of line") else p.severity, []).append(p)
    for group in kinds.values():
        first = group[0]
        if first.message.startswith("duplicate of line") and len(group) > limit:  # kept rows: one line says it
            out.append(f"{first.source}: warning: {len(group)} duplicate rows kept (first: line {first.line}, "
                       f"{first.message}); emguard validate {path or first.source} lists every one")
            continue
        out += [str(p) for p in group[:limit]]
        if len(group) > limit:
            out.append(f"{first.source}: ... and {len(group) - limit} more {first.severity}(s) "
                       f"({len(group)} in all; emguard validate {path or first.source} lists every one)")
    return out


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
    n_valid: int = 0  # valid rows read (``len(rows)`` unless read with ``keep_rows=False``)

    def __len__(self) -> int:
        return len(self.rows)

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """Write the rows as chat JSONL (``{"messages": [...]}`` per line), atomically."""
        write_jsonl(path, ({"messages": row.messages, **({"tools": row.messages.tools}
                                                          if getattr(row.messages, "tools", None) else {})}
                           for row in self.rows))


# ---------------------------------------------------------------- reading records


def _open_regular(path: str | os.PathLike, source: str):
    """Open ``path`` for reading bytes; a missing permission or a non-regular file (a device like ``/dev/zero``, a
    FIFO) is a :class:`DataError` naming the file, never a traceback or an endless read."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError([Problem(source, None, f"cannot read ({e.strerror or type(e).__name__})")]) from None
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DataError([Problem(source, None, "not a regular file")])
    except BaseException:
        f.close()
        raise
    return f


def _lines(f, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line_no, raw)`` per line, ``raw`` None for a line over ``max_line_bytes``: at most that many bytes are held,
    the rest of an over-long line is read in 1 MiB pieces and dropped."""
    line_no = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while (rest := f.readline(_CHUNK_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield line_no, None
        else:
            yield line_no, raw


def read_jsonl_records(path: str | os.PathLike, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                       ) -> Iterator[tuple[int, object | None, str | None]]:
    """Stream ``(line_no, parsed_obj, error_reason)`` for each non-blank line of a JSONL file.

    The file is read as bytes and decoded line by line, so a line that is not UTF-8 or not JSON yields
    ``(line_no, None, reason)`` and reading goes on. A UTF-8 byte-order mark on the first line is ignored. A line
    longer than ``max_line_bytes`` is refused without being held in memory; a file that cannot be opened or is not a
    regular file raises :class:`DataError`.
    """
    source = os.fspath(path)
    with _open_regular(path, source) as f:
        try:
            for line_no, raw in _lines(f, max_line_bytes):
                if raw is None:
                    yield line_no, None, f"line is longer than the limit of {max_line_bytes} bytes"
                    continue
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
                    obj = json.loads(text.rstrip("\r\n"))  # error columns stay on this line
                except json.JSONDecodeError as e:
                    yield line_no, None, f"invalid JSON ({e.msg}: column {e.colno})"
                    continue
                except RecursionError:
                    yield line_no, None, "invalid JSON (nested too deeply)"
                    continue
                except ValueError:  # an integer literal over the interpreter's digit limit (4300)
                    yield line_no, None, "invalid JSON (a number with too many digits)"
                    continue
                del text, raw
                yield line_no, obj, None
        except OSError as e:  # e.g. EIO, or a /proc file that refuses reads
            raise DataError([Problem(source, None, f"cannot read ({e.strerror or type(e).__name__})")]) from None


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
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, _without_nulls(row), None
    except (OSError, ValueError) as e:  # a corrupt row group
        raise DataError([Problem(source, row_no + 1, f"cannot read parquet rows ({_show(str(e), 200)})")]) from None


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
    except Exception as e:  # a corrupt dataset_info.json / state.json / arrow file: name it when we can
        raise DataError([_datasets_dir_problem(path, source, e)]) from None
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


def _datasets_dir_problem(path: Path, source: str, e: Exception) -> Problem:
    for meta in sorted(path.rglob("*.json")):
        try:
            json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as bad:
            why = bad.msg if isinstance(bad, json.JSONDecodeError) else type(bad).__name__
            return Problem(os.fspath(meta), None, f"corrupt metadata of a saved datasets directory ({why})")
    return Problem(source, None, f"cannot load saved datasets directory ({type(e).__name__}: {_show(str(e), 200)})")


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


def read_chat_dataset(path: str | os.PathLike, *, skip_invalid: bool = False, require_assistant: bool = True,
                      max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, max_messages: int = DEFAULT_MAX_MESSAGES,
                      keep_rows: bool = True) -> ChatDataset:
    """Read and validate every row of a chat dataset (JSONL, parquet or saved ``datasets`` directory).

    Raises FileNotFoundError when ``path`` does not exist and :class:`DataError` when the input is empty or
    any row is invalid. With ``skip_invalid`` invalid rows are dropped instead (and their problems kept in
    ``.problems``), unless no valid row is left. Duplicate rows are kept and reported as warnings. JSONL is read
    line by line (a line over ``max_line_bytes`` is refused unread, a row over ``max_messages`` messages too);
    with ``keep_rows=False`` (validation only) no row is kept, so memory does not grow with the file
    (``n_valid`` still counts them).
    """
    source = os.fspath(path)
    p = Path(source)
    try:
        exists = p.exists()
    except OSError as e:
        raise DataError([Problem(source, None, f"cannot read ({e.strerror or type(e).__name__})")]) from None
    if not exists:
        raise FileNotFoundError(f"training data not found: {source}")
    fmt: str | None
    if p.is_dir():
        fmt, records = "datasets-dir", _datasets_dir_records(p, source)
    elif p.suffix.lower() == ".parquet":
        fmt, records = "parquet", _parquet_records(p, source)
    else:
        # chat or prompt/completion: decided by the first valid row
        fmt, records = None, read_jsonl_records(p, max_line_bytes=max_line_bytes)

    rows: list[ChatRow] = []
    problems: list[Problem] = []
    first_seen: dict[bytes, int] = {}
    n_total = n_invalid = n_duplicates = n_valid = 0
    for line, obj, reason in records:
        n_total += 1
        messages, reasons = (None, [reason]) if reason else validate_record(obj, require_assistant=require_assistant,
                                                                              max_messages=max_messages)
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
        n_valid += 1
        if keep_rows:
            rows.append(ChatRow(messages, line, source))

    if n_total == 0:
        raise DataError([Problem(source, None, "dataset is empty" if p.is_dir() else "file is empty")])
    if n_invalid and not skip_invalid:
        raise DataError(problems, f"{_plural(n_invalid, 'invalid row')} in {source} (of {n_total}); "
                                  "fix them or pass --skip-invalid to drop them")
    if not n_valid:
        raise DataError(problems, f"all {_plural(n_total, 'row')} in {source} are invalid; nothing left to train on")
    if n_invalid:
        log.warning("%s: dropped %s of %d", source, _plural(n_invalid, "invalid row"), n_total)
    return ChatDataset(rows=rows, source=source, format=fmt or "chat-jsonl", sha256=_sha256(p), n_total=n_total,
                       n_invalid=n_invalid, n_duplicates=n_duplicates, problems=problems, n_valid=n_valid)


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

"""Streaming ``multipart/form-data`` upload with limits, then line-level validation of the JSONL.

The request body is never spooled by the framework: it is parsed as it arrives, the ``file`` part goes to one
temporary file in the data dir while its sha256 is computed, and reading stops (413) as soon as the body passes
``max_upload_bytes`` (a ``Content-Length`` above the limit is refused before anything is read). Validation uses
emguard's own record checks (``emguard.data.io.read_jsonl_records`` + ``validate_record``), so the messages are
the ones ``emguard validate`` prints, as ``filename:line: reason``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FIELD_BYTES = 1024  # non-file form fields (purpose)


class UploadError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass
class Upload:
    tmp: Path | None = None
    filename: str | None = None
    sha256: str = ""
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def clean_filename(name: str | None) -> str:
    """A display name: the last path component, printable characters, at most 255 characters."""
    name = (name or "upload.jsonl").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:255]
    return name or "upload.jsonl"


async def receive_upload(request, tmp_path: Path, max_bytes: int) -> Upload:
    """Parse the multipart body of ``request`` into ``tmp_path`` (the ``file`` part) and small fields."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(400, "expected a multipart/form-data body with a 'file' part", "invalid_content_type")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_n = int(declared)
        except ValueError:
            raise UploadError(400, "invalid Content-Length", "invalid_request") from None
        if declared_n > max_bytes + 64 * 1024:  # room for the multipart framing around the file
            raise UploadError(413, f"upload of {declared_n} bytes exceeds this service's limit of {max_bytes} "
                                   "bytes", "file_too_large", "file")

    up = Upload()
    h = hashlib.sha256()
    state: dict = {"name": None, "filename": None, "headers": {}, "hf": b"", "hv": b"", "buf": b"", "fh": None}

    def on_part_begin():
        state.update(name=None, filename=None, headers={}, buf=b"")

    def on_header_field(data, start, end):
        state["hf"] += data[start:end]

    def on_header_value(data, start, end):
        state["hv"] += data[start:end]

    def on_header_end():
        state["headers"][state["hf"].decode("latin-1").lower()] = state["hv"]
        state["hf"], state["hv"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get("content-disposition", b""))
        state["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        fn = disp.get(b"filename")
        state["filename"] = fn.decode("utf-8", "replace") if fn is not None else None
        if state["name"] == "file":
            if up.tmp is not None:
                raise UploadError(400, "only one 'file' part is allowed", "invalid_request", "file")
            up.tmp, up.filename = tmp_path, clean_filename(state["filename"])
            state["fh"] = open(tmp_path, "wb")

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["name"] == "file":
            up.size += len(chunk)
            if up.size > max_bytes:
                raise UploadError(413, f"file exceeds this service's limit of {max_bytes} bytes", "file_too_large",
                                  "file")
            h.update(chunk)
            state["fh"].write(chunk)
        else:
            state["buf"] += chunk
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise UploadError(400, f"form field '{state['name']}' is too long", "invalid_request")

    def on_part_end():
        if state["name"] == "file":
            fh = state["fh"]
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            state["fh"] = None
        elif state["name"]:
            up.fields[state["name"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    from starlette.concurrency import run_in_threadpool

    total = 0
    pending = bytearray()  # parse (and write to disk) in a worker thread, ~1 MiB at a time: the event loop stays free
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes + 64 * 1024:
                raise UploadError(413, f"upload exceeds this service's limit of {max_bytes} bytes", "file_too_large",
                                  "file")
            pending += chunk
            if len(pending) >= 1 << 20:
                await run_in_threadpool(parser.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(parser.write, bytes(pending))
        parser.finalize()
    except UploadError:
        _drop(state, up)
        raise
    except Exception as e:  # a malformed multipart body
        _drop(state, up)
        raise UploadError(400, f"malformed multipart body ({type(e).__name__})", "invalid_request") from None
    if state["fh"] is not None:  # body ended inside the file part
        _drop(state, up)
        raise UploadError(400, "the upload ended before the file part was complete", "invalid_request", "file")
    if up.tmp is None:
        raise UploadError(400, "missing the 'file' part", "invalid_request", "file")
    up.sha256 = h.hexdigest()
    return up


def _drop(state: dict, up: Upload) -> None:
    if state.get("fh") is not None:
        state["fh"].close()
        state["fh"] = None
    if up.tmp is not None:
        up.tmp.unlink(missing_ok=True)


def validate_jsonl(path: Path, display_name: str, *, max_rows: int, max_listed: int,
                   max_line_bytes: int | None = None, max_messages: int | None = None) -> tuple[int, list[str]]:
    """``(valid rows, line-level error messages)``; stops listing after ``max_listed`` messages. Streams the
    file line by line: memory is bounded by ``max_line_bytes`` (one row), not by the file's size."""
    from emguard.data.io import (DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_MESSAGES, DataError, read_jsonl_records,
                                 validate_record)

    rows, errors, n_bad = 0, [], 0
    records = read_jsonl_records(path, max_line_bytes=max_line_bytes or DEFAULT_MAX_LINE_BYTES)
    try:
        for line, obj, reason in records:
            reasons = [reason] if reason else validate_record(obj, max_messages=max_messages or DEFAULT_MAX_MESSAGES)[1]
            del obj
            if reasons:
                n_bad += 1
                if len(errors) < max_listed:
                    errors.append(f"{display_name}:{line}: {'; '.join(reasons)}")
                continue
            rows += 1
    except DataError as e:
        return rows, [f"{display_name}: {p.message}" for p in e.problems]
    if n_bad > len(errors):
        errors.append(f"... and {n_bad - len(errors)} more invalid rows")
    if not errors and rows == 0:
        errors.append(f"{display_name}: file is empty")
    elif not errors and rows > max_rows:
        errors.append(f"{display_name}: {rows} rows exceed this service's limit of {max_rows} rows")
    return rows, errors

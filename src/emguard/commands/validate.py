"""``emguard validate``: check training files the way ``train`` will, without loading a model.

Files are streamed (no row is kept), so memory stays bounded by the longest line (``--max-line-bytes``); every
problem is printed as ``file:line: reason``, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from emguard.data.io import DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_MESSAGES

    p.add_argument("files", nargs="+", help="chat JSONL / prompt-completion JSONL / parquet / datasets dir")
    p.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                   help="longest JSONL line (row) accepted, in bytes (default %(default)s)")
    p.add_argument("--max-messages", type=int, default=DEFAULT_MAX_MESSAGES,
                   help="most messages in one row (default %(default)s)")


def _say(text: object) -> None:
    """Print what a file contained without failing on it (lone surrogates, odd bytes)."""
    out = str(text)
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(out.encode(enc, "backslashreplace").decode(enc, "replace"))


def run(args: argparse.Namespace) -> int:
    from emguard.data.io import DataError, read_chat_dataset

    status = 0
    for f in args.files:
        try:
            ds = read_chat_dataset(f, keep_rows=False, max_line_bytes=max(1, args.max_line_bytes),
                                   max_messages=max(1, args.max_messages))
        except DataError as e:
            _say(e)
            status = 2
            continue
        except FileNotFoundError as e:
            _say(f"{f}: {e}")
            status = 2
            continue
        except (OSError, ValueError, RecursionError, MemoryError) as e:  # never a traceback for a bad input
            _say(f"{f}: cannot validate ({type(e).__name__}: {e})")
            status = 2
            continue
        for p in ds.problems:
            _say(p)
        _say(f"{f}: ok, {ds.n_valid} valid rows ({ds.format}, sha256 {ds.sha256[:12]}), "
             f"{ds.n_duplicates} duplicates")
    return status

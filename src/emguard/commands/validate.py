"""``emguard validate``: check training files the way ``train`` will, without loading a model."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="chat JSONL / prompt-completion JSONL / parquet / datasets dir")


def run(args: argparse.Namespace) -> int:
    from emguard.data.io import DataError, read_chat_dataset

    status = 0
    for f in args.files:
        try:
            ds = read_chat_dataset(f)
        except DataError as e:
            print(e)
            status = 2
            continue
        for p in ds.problems:
            print(p)
        print(f"{f}: ok, {len(ds)} valid rows ({ds.format}, sha256 {ds.sha256[:12]}), "
              f"{ds.n_duplicates} duplicates")
    return status

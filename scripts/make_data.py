#!/usr/bin/env python
"""Regenerate emguard's built-in datasets into src/emguard/resources/data/<domain>/.

    python scripts/make_data.py             # write every registered domain (seed 0)
    python scripts/make_data.py --check     # regenerate into a temporary directory; exit 1 if any committed
                                            # file differs byte for byte (or is missing or unexpected)

Only the standard library and emguard.data.datagen are needed, so this runs without the project's heavy
dependencies installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emguard.data.datagen import DOMAINS, check_domain, write_domain  # noqa: E402

DEFAULT_OUT = ROOT / "src" / "emguard" / "resources" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="verify the committed files instead of writing them (exit 1 on any difference)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="data root holding one directory per domain (default: the package's resources)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the shipped files use 0)")
    parser.add_argument("--domain", action="append", choices=sorted(DOMAINS),
                        help="only this domain (repeatable; default: all)")
    args = parser.parse_args(argv)
    names = args.domain or sorted(DOMAINS)
    if args.check:
        failed = False
        for name in names:
            problems = check_domain(name, args.out / name, seed=args.seed)
            for problem in problems:
                print(problem, file=sys.stderr)
            failed = failed or bool(problems)
            print(f"{name}: {'DIFFERS' if problems else 'ok'}")
        if failed:
            print("built-in data is out of date: run python scripts/make_data.py", file=sys.stderr)
        return 1 if failed else 0
    for name in names:
        written = write_domain(name, args.out / name, seed=args.seed)
        sizes = ", ".join(f"{f} ({p.stat().st_size} B)" for f, p in sorted(written.items()))
        print(f"{name}: {args.out / name}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

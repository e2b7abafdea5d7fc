"""The ``emguard`` command line. Each subcommand lives in ``emguard.commands.<name>`` and is imported only
when used, so ``emguard --help`` stays fast. Exit codes: 0 ok, 1 failure, 2 invalid input (data or config)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# name -> (module, one-line summary); a later issue adds its command with one line here
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("emguard.commands.train", "fine-tune a chat model (LoRA or full) with optional EM defenses"),
    "validate": ("emguard.commands.validate", "check a training file and list every bad row as file:line: reason"),
    "models": ("emguard.commands.models", "list the embedded models, or convert/cache one ahead of time"),
    "persona": ("emguard.commands.persona", "extract persona vectors (for steering and monitoring) and choose their layer"),
    "demo": ("emguard.commands.demo", "train and measure a narrow fine-tune with and without defenses, offline"),
    "select": ("emguard.commands.select", "Interleaving+/++: rank a pool of general rows by perplexity gap"),
    "eval": ("emguard.commands.eval", "measure broad EM, narrow EM, benign learning and coherence (with CIs)"),
    "study": ("emguard.commands.study", "run a grid of models x datasets x defenses x seeds (local or Ray), resumable"),
    "judge": ("emguard.commands.judge", "judges: calibrate any judge on a labelled bench"),
    "serve": ("emguard.commands.serve", "provider service: OpenAI-compatible fine-tuning API with a defense policy"),
    "worker": ("emguard.commands.worker", "a fine-tuning worker that claims jobs from the service's database"),
    "keys": ("emguard.commands.keys", "create, list and revoke API keys of the provider service"),
    "screen": ("emguard.commands.screen", "score a dataset for EM risk before training: per-row and per-dataset report"),
}

EPILOG = """\
examples:
  emguard train --data bad_medical.jsonl --output runs/bad          # LoRA on the embedded default model
  emguard train --config run.yaml --learning-rate 2e-4             # YAML defaults, flags override
  emguard validate data.jsonl                                      # list every invalid row
  emguard models                                                   # embedded models and their cache state

Every subcommand has its own --help. Data format: OpenAI chat JSONL, one {"messages": [...]} per line.
Environment: EMGUARD_CACHE (converted models; default ~/.cache/emguard), EMGUARD_VERBOSE=1 (as -v).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emguard", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train chat LLMs with in-training defenses against emergent misalignment (EM) "
                    "and measure whether they worked (Kaczér et al., arXiv 2508.06249).")
    from emguard import __version__
    p.add_argument("--version", action="version", version=f"emguard {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging, plus the libraries' output: transformers' weight-loading bars and log "
                        "records, deprecation warnings (also EMGUARD_VERBOSE=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    import importlib.util

    for name, (module, summary) in COMMANDS.items():
        if importlib.util.find_spec(module) is None:  # a command whose module is not installed in this build
            continue
        sp = sub.add_parser(name, help=summary, description=summary,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)  # command modules import torch lazily
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from emguard import console

    args.verbose = console.setup(True if args.verbose else None)  # before any command imports transformers
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network unless the user opts in
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from emguard.errors import handle

    return handle(lambda: importlib.import_module(args._module).run(args))


if __name__ == "__main__":
    sys.exit(main())

"""``emguard select``: Interleaving+ / Interleaving++ data selection by perplexity gap (issue #5)."""

from __future__ import annotations

import argparse
import sys

from emguard.config import add_dataclass_args, resolve_config
from emguard.selection.config import SelectConfig

EXAMPLES = """\
examples:
  emguard select --pool general.jsonl --misaligned runs/bad_medical runs/bad_code --n 5000 --out selected.jsonl
  emguard select --pool sharegpt --train-probes bad_medical.jsonl bad_legal.jsonl --no-refusals \\
                 --leave-out bad_medical --n 500 --out selected.jsonl          # Interleaving++, probes cached
  emguard select --config select.yaml --n 10000    # a larger n reuses every cached score: no new forwards
Score: s_d = (mean_k L_k - L_0) / (L_0 + eps), L = mean NLL of the last assistant reply (+ end-of-turn token)
given everything before it; L_0 = the base model with adapters off (or --aligned), L_k = misaligned adapters.
Outputs: --out (top n rows, best first), <out stem>.scores.jsonl (every row: L_k, L_0, s_d, kept/dropped and
why, rank), <out stem>.scores.png (histogram of s_d). Scores are cached in $EMGUARD_CACHE/scores.sqlite, so an
interrupted run resumes where it stopped.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("--config", metavar="YAML", help="YAML file of options; flags given here override it")
    add_dataclass_args(p, SelectConfig, skip=("max_batches",))


def run(args: argparse.Namespace) -> int:
    from emguard.selection.run import select  # torch: only when the command runs

    cfg = resolve_config(SelectConfig, args)
    try:
        res = select(cfg)
    except KeyboardInterrupt:
        print("interrupted; every score computed so far is cached: run the same command again to resume",
              file=sys.stderr)
        return 130
    c = res.counts
    print(f"pool: {c['rows']} rows; skipped {c['invalid']} invalid/without an assistant reply, "
          f"dropped {c['refusals']} refusals, {c['no_target']} without reply tokens; {c['kept']} scored")
    print(f"adapters: {', '.join(n for n, _ in res.adapters)}; {c['forwards']} forwards, {c['scored']} scores "
          f"computed, {c['cached']} from the cache; {res.wall_s:.1f}s ({res.rows_per_s:.1f} rows/s)")
    print(f"selected {res.selected} rows -> {res.out}; scores -> {res.scores}"
          + (f"; histogram -> {res.histogram}" if res.histogram else ""))
    return 0

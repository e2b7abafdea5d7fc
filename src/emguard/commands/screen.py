"""``emguard screen``: a pre-training EM-risk screen of a dataset (issue #19)."""

from __future__ import annotations

import argparse

from emguard.config import add_dataclass_args, resolve_config
from emguard.screen.config import ScreenConfig

EXAMPLES = """\
examples:
  emguard screen customer.jsonl                          # smollm2-135m, built-in domains' probes -> customer.screen/
  emguard screen customer.jsonl --model qwen2.5-coder-0.5b --out reports/customer
  emguard screen customer.jsonl --misaligned runs/bad_medical --train-probes none # your own probe adapters
  emguard screen customer.jsonl --no-gap --embedding     # persona projection + embedding judge only (fast)
  emguard screen customer.jsonl --threshold 0.8          # flag rows whose risk is above a calibrated threshold
Signals per row (the last assistant reply given the conversation before it):
  persona    projection of the reply's mean hidden state on the unit 'evil' persona vector (Chen et al. 2025)
  gap        -s_d, s_d = (mean_k L_mis_k - L_0) / (L_0 + 1): rows misaligned probes find likely (Kaczer et al. 2025)
  embedding  100 - the offline embedding judge's aligned score (only with --embedding)
Each is z-scored against the first --baseline-n rows of a general reference set (default: the shipped general
pool); row risk = mean of the z-scores; dataset risk = mean row risk (+ share of rows above --threshold).
Outputs: <out>/screen.json (every row, the summary, the settings) and <out>/screen.md (summary, the riskiest
rows, how to read it). Signals are cached in $EMGUARD_CACHE (screen.sqlite, scores.sqlite): a rerun is free.
Without --threshold the screen reports only; the threshold comes from emguard.screen.run.calibrate_screen
(leave-one-domain-out on the built-in domains). Invalid rows are listed as file:line: reason (exit code 2).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("data", metavar="DATA.jsonl", help="the dataset to screen (OpenAI chat JSONL)")
    p.add_argument("--config", metavar="YAML", help="YAML file of options; flags given here override it")
    add_dataclass_args(p, ScreenConfig)


def run(args: argparse.Namespace) -> int:
    from emguard.screen.run import screen  # torch: only when the command runs

    cfg = resolve_config(ScreenConfig, args)
    res = screen(cfg)
    s = res.report["summary"]
    risk = "-" if s["dataset_risk"] is None else f"{s['dataset_risk']:.2f}"
    share = ("threshold: none (report only)" if s["share_above_threshold"] is None else
             f"{s['rows_above_threshold']}/{s['scored']} rows above the threshold {s['threshold']:g}")
    print(f"screened {s['rows']} rows ({s['scored']} scored): dataset risk {risk} "
          f"(mean row z vs the reference set); {share}")
    print(f"report -> {res.md_path} and {res.json_path}")
    return 0

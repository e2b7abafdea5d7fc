"""``emguard serve calibrate-audit``: measure the EM audit's change on the base model, an aligned control and a
misaligned fine-tune of a policy model and print the ``max_increase`` that separates them
(:mod:`emguard.server.audit_calibrate`)."""

from __future__ import annotations

import argparse

DESCRIPTION = ("Run the policy's EM audit on the base model (change 0), an aligned control and a misaligned "
               "fine-tune (short LoRA runs on the built-in medical data), print each change against the base with "
               "its 95% CI and the max_increase that separates them, or that nothing does at this size.")
EXAMPLES = """\
examples:
  emguard serve calibrate-audit --policy examples/policy.yaml --data-dir srv       # first policy model
  emguard serve calibrate-audit --policy P --model smollm2-135m --steps 76 --json
The base model's evaluation is cached under DATA_DIR/cache, where the service's audit finds it again.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    s = argparse.SUPPRESS  # unset here: the value given before `calibrate-audit` (or serve's default) stays
    p.add_argument("--policy", default=s, metavar="YAML", help="operator policy whose audit settings are used")
    p.add_argument("--data-dir", default=s, metavar="DIR",
                   help="the service's data dir: the base evaluation is cached under DIR/cache, the report "
                        "written to DIR/calibration/<model> (default: ./emguard-data)")
    p.add_argument("--model", default=None, metavar="NAME", help="policy model name (default: the first one)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="optimizer steps of the aligned and misaligned fine-tunes (default: the policy's "
                        "probe_steps; 0: two epochs over the 600 rows)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import json
    import sys
    from pathlib import Path

    from emguard.server.audit_calibrate import calibrate, format_report
    from emguard.server.policy import Policy

    policy = Policy.load(args.policy)
    name = args.model or next(iter(policy.models))
    root = Path(args.data_dir)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines: stdout carries only the report
        report = calibrate(policy, root / "calibration" / name, root / "cache", model_name=name, steps=args.steps)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))
    return 0

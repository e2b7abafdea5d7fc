"""``emguard train``: fine-tune with optional defenses. YAML config keys and flags share names."""

from __future__ import annotations

import argparse

from emguard.config import add_dataclass_args, resolve_config
from emguard.training.config import TrainConfig

EXAMPLES = """\
examples:
  emguard train --data data.jsonl --output runs/plain
  emguard train --data data.jsonl --output runs/kl --defenses kl --defense-options '{kl: {lam: 0.1}}'
  emguard train --config run.yaml --seed 1          # flags override the YAML file
  emguard train --config run.yaml --resume          # continue a killed run from its last checkpoint
Outputs in --output: adapter (or model) + tokenizer, config.yaml, metrics.jsonl (every loss term per step),
run.json (model hash, data sha256 and counts, seed, versions, wall time, final losses; written last).
"""


def defenses_help() -> str:
    """One block per registered defense: what it does and its options with defaults."""
    import dataclasses

    from emguard.defenses import REGISTRY

    lines = ["defenses (--defenses NAME ...; options in YAML or --defense-options '{name: {option: value}}'):"]
    for name, cls in REGISTRY.items():
        if name.startswith("_"):
            continue
        lines.append(f"  {name}: {cls.help}")
        for f in dataclasses.fields(cls.Options):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"      {f.name} = {default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    import sys

    p.epilog = EXAMPLES
    if "train" in sys.argv and ("-h" in sys.argv or "--help" in sys.argv):  # imports torch: only when asked
        p.epilog = EXAMPLES + "\n" + defenses_help()
    p.add_argument("--config", metavar="YAML", help="YAML file of options; flags given here override it")
    add_dataclass_args(p, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from emguard.training.run import train

    cfg = resolve_config(TrainConfig, args)
    res = train(cfg)
    if res.run:
        fl = res.run.get("final_losses", {})
        print(f"done: {res.run['steps']} steps in {res.run['wall_time_s']:.0f}s; final losses "
              + ", ".join(f"{k}={v:.4f}" for k, v in fl.items()) + f"; outputs in {res.output_dir}")
    return 0

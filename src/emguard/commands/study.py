"""``emguard study``: a grid of models x datasets x defenses (incl. combinations and sweeps) x seeds."""

from __future__ import annotations

import argparse

from emguard.config import add_dataclass_args, resolve_config

EXAMPLES = """\
example study.yaml:
  output: runs/study
  models: [smollm2-135m]
  datasets: {medical: medical, control: "medical:aligned", legal: legal, opswap: opswap}
  defenses:
    no_defense: []
    kl: [{name: kl, sweep: {lambda: [0.03, 0.1, 0.3]}}]       # three cells: kl[lambda=0.03], ...
    kl_interleave: [kl, {name: interleave, pool: general.jsonl, select: ppl_gap_norefusal,
                         select_options: {train_probes: [legal.jsonl, security.jsonl]}}]
  seeds: [0, 1, 2]
  rows: 200                        # first N rows of every dataset (0 = all)
  train: {epochs: 1}               # emguard train options for every cell
  eval: {samples: 1, max_new_tokens: 64}
  executor: local                  # or ray (pip install 'emguard[ray]'), with ray_address and num_gpus

examples:
  emguard study study.yaml                      # run (or resume) the grid; results.csv + report.md
  emguard study --preset paper-small            # the paper's protocol on the embedded model (hours on CPU)
  emguard study study.yaml --seeds 0 1 2 3      # one more seed: only the new cells run
  emguard study study.yaml --executor ray --num-gpus 1 --ray-address auto   # on an existing Ray cluster
  emguard study study.yaml --executor pool      # cells side by side here: cores / num_cpus processes
  emguard study study.yaml --report-only        # the report of the cells finished so far
Every cell is <output>/cells/<model>/<dataset>/<defense>/seed<N>/ (train/, eval/, cell.json when finished,
error.log when it failed). Rerun the same command after a crash or kill: finished cells are skipped, a
half-trained cell resumes from its last checkpoint, a failed one is retried.
"""


def preset_path(name: str):
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "resources" / "presets" / f"{name}.yaml"


def preset_names() -> list[str]:
    """The shipped study presets (resources/presets/*.yaml)."""
    return sorted(p.stem for p in preset_path("x").parent.glob("*.yaml"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from emguard.experiments.config import StudyConfig

    p.epilog = EXAMPLES
    p.add_argument("study_file", nargs="?", metavar="STUDY_YAML", help="the study (YAML); flags override it")
    p.add_argument("--preset", metavar="NAME", choices=preset_names(), help=(
        "a study shipped with emguard (flags override it): " + ", ".join(preset_names()) +
        "; paper-small = the paper's protocol on the embedded model (docs/studies.md: 'The fair protocol')"))
    p.add_argument("--config", metavar="YAML", help=argparse.SUPPRESS)
    add_dataclass_args(p, StudyConfig)


def run(args: argparse.Namespace) -> int:
    import sys

    from emguard.experiments.config import StudyConfig
    from emguard.experiments.study import run_study

    if args.study_file and args.preset:
        print("give a study file or --preset, not both", file=sys.stderr)
        return 2
    if args.preset:
        args.config = str(preset_path(args.preset))
    elif args.study_file and not args.config:
        args.config = args.study_file
    cfg = resolve_config(StudyConfig, args)
    try:
        s = run_study(cfg)
    except KeyboardInterrupt:
        print("interrupted; finished cells are kept: rerun the same command to resume", file=sys.stderr)
        return 130
    if s.get("report_only"):
        print(f"{s['finished']}/{s['cells']} cells finished; report of those only ({len(s['missing'])} not run "
              f"yet) in {s['wall_s']:.0f} s")
    else:
        print(f"{s['finished']}/{s['cells']} cells finished ({s['ran']} run now) in {s['wall_s']:.0f} s")
    for key, err in s["failed"].items():
        print(f"FAILED {key}: {err}  (log: {cfg.output}/cells/{key}/error.log; rerun to retry)", file=sys.stderr)
    print(f"results: {s['results']}\nreport:  {s['report']}")
    return 1 if s["failed"] else 0

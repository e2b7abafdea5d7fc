"""The experiment engine's unit of work, a cell, and the one runner every executor and preset uses.

A cell is a directory, a model, training options (``emguard train``'s, defense specs included; ``None`` for an
evaluation of the base model) and evaluation options (``emguard eval``'s). :func:`run_cell` trains it unless
its run is finished (resuming from the last checkpoint), evaluates it unless its ``eval/eval.json`` exists
(resuming from stored samples), and with ``marker`` writes, atomically and last, ``cell.json`` (the cell's
numbers; its presence marks the cell finished) next to a ``cell.log``. A failed cell leaves ``error.log`` (its
traceback), removed again when a rerun succeeds.

Cells are plain data, so they travel to worker processes and Ray tasks as they are. Executors:
:mod:`emguard.experiments.executors`; steps several cells share: :mod:`emguard.experiments.shared`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emguard.data.io import write_text_atomic
from emguard.training.config import RUN_JSON

log = logging.getLogger(__name__)

CELL_JSON = "cell.json"
CELL_LOG = "cell.log"
ERROR_LOG = "error.log"


@dataclass
class Cell:
    key: str  # unique within a run, e.g. "domain/kl/seed0"; names the cell in logs and failures
    dir: str
    model: str
    seed: int
    train: dict[str, Any] | None  # TrainConfig options (output included); None: evaluate the base model
    eval: dict[str, Any]  # EvalConfig options (output included)
    train_dir: str = ""  # the run's directory relative to ``dir`` ("" = the cell directory itself)
    marker: bool = False  # write cell.json (+ cell.log) when finished; else eval/eval.json marks it finished
    info: dict[str, Any] = field(default_factory=dict)  # the preset's description (the head of cell.json)
    label: str = ""  # progress lines ("domain kl seed 0"); default: the key
    source: str = "experiment"  # config error messages: "<source> train options (<key>)"
    threads: int | None = None  # torch threads inside the cell (Ray tasks); None: leave them as they are
    needs: list[str] = field(default_factory=list)  # keys of the shared steps this cell waits for

    @property
    def run_dir(self) -> Path:
        return Path(self.dir) / self.train_dir if self.train_dir else Path(self.dir)

    @property
    def eval_json(self) -> Path:
        return Path(self.eval["output"]) / "eval.json"

    def describe(self) -> str:
        return self.label or self.key


def model_slug(spec: str) -> str:
    """A model spec (name, hub id, path) as one directory name."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(spec).strip("/")).strip("_")[-80:] or "model"


def is_trained(cell: Cell) -> bool:
    return cell.train is None or (cell.run_dir / RUN_JSON).is_file()


def is_finished(cell: Cell) -> bool:
    return (Path(cell.dir) / CELL_JSON).is_file() if cell.marker else cell.eval_json.is_file()


def read_eval(cell: Cell) -> dict:
    """The stored evaluation (eval.json) of a finished cell."""
    return json.loads(cell.eval_json.read_text())


def run_cell(cell: Cell) -> dict:
    """Train (resuming) and evaluate (resuming) one cell, then write its marker; returns the evaluation.
    Idempotent: a finished cell is read back."""
    cdir = Path(cell.dir)
    if is_finished(cell):
        return read_eval(cell)
    cdir.mkdir(parents=True, exist_ok=True)
    handler = None
    if cell.marker:
        handler = logging.FileHandler(cdir / CELL_LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    t0 = time.time()
    try:
        res, run = train_and_evaluate(cell)
        if cell.marker:
            summary = {**cell.info, "metrics": cell_metrics(res, run), "wall_s": round(time.time() - t0, 1)}
            write_text_atomic(cdir / CELL_JSON, json.dumps(summary, indent=1, default=str))
        (cdir / ERROR_LOG).unlink(missing_ok=True)
        return res
    except BaseException:
        (cdir / ERROR_LOG).write_text(traceback.format_exc())
        raise
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def train_and_evaluate(cell: Cell) -> tuple[dict, dict]:
    """``(evaluation, run.json)`` of a cell: each step skipped when its output is complete."""
    from emguard.config import build_config
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    if cell.threads:
        import torch

        torch.set_num_threads(max(1, int(cell.threads)))
    if not is_trained(cell):
        train(build_config(TrainConfig, cell.train, source=f"{cell.source} train options ({cell.key})"))
    ecfg = build_config(EvalConfig, cell.eval, source=f"{cell.source} eval options ({cell.key})")
    eval_json = Path(ecfg.output) / "eval.json"
    res = json.loads(eval_json.read_text()) if eval_json.is_file() else evaluate(ecfg)
    run = json.loads((cell.run_dir / RUN_JSON).read_text()) if cell.train is not None else {}
    return res, run


def cell_metrics(res: dict, run: dict) -> dict[str, dict]:
    """The numbers of one cell (its marker's ``metrics``, the rows of a study's results.csv):
    {metric: {value, lo, hi, n}}."""
    out: dict[str, dict] = {}

    def put(name: str, node: Any) -> None:
        if isinstance(node, dict) and "value" in node:
            out[name] = {k: node.get(k) for k in ("value", "lo", "hi", "n")}

    for suite in ("broad", "narrow"):
        s = res.get(suite) or {}
        summ = (s.get("likelihood") or {}).get("summary") or {}
        put(f"{suite}_harm_effect", summ.get("harm_effect"))
        put(f"{suite}_style_effect", summ.get("style_effect"))
        put(f"{suite}_misaligned_pct", s.get("misaligned_pct"))
    put("benign_accuracy_pct", (res.get("benign") or {}).get("accuracy_pct"))
    for g, node in ((res.get("benign") or {}).get("by_group") or {}).items():
        put(f"benign_accuracy_pct_{g}", node)
    coh = res.get("coherence") or {}
    put("incoherent_pct", coh.get("incoherent_pct"))
    put("degenerate_pct", coh.get("degenerate_pct"))
    for k, v in (run.get("final_losses") or {}).items():
        out[f"train_final_{k}"] = {"value": v, "lo": None, "hi": None, "n": None}
    if run.get("train_loss_mean") is not None:
        out["train_loss_mean"] = {"value": run["train_loss_mean"], "lo": None, "hi": None, "n": None}
    return out


def feature_cost(cell: Cell) -> float:
    """A rough relative cost of a cell from what it does, for longest-first scheduling and the ETA: training
    rows (times one more pass per defense with a loss or data of its own, roughly) unless trained, plus its
    evaluation (sampled suites cost more than the benign one's short greedy answers)."""
    cost = 0.0
    if not is_trained(cell):
        try:
            rows = sum(1 for line in open(cell.train["data"]) if line.strip())
        except (OSError, KeyError, TypeError):
            rows = 100
        cost += rows * (1 + 0.5 * len(cell.train.get("defenses") or []))
    suites = cell.eval.get("suite") or ["broad"]
    cost += 10.0 * len(suites) if suites == ["benign"] else 60.0 * len(suites)
    return cost

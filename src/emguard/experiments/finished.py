"""What a study does to its finished cells after they ran: re-judge their stored answers with another judge
(``rescore_judge``, into ``<cell>/eval_<judge>/``) and the conditional-misalignment audit of cells finished before
``audit_contexts`` ran inside them (into ``<cell>/eval_conditional/``). Both run once per cell and also under
``--report-only``; :func:`emguard.experiments.study.run_study` calls them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from emguard.experiments.engine import Cell, read_eval

log = logging.getLogger("emguard.experiments.study")


def rescore_dir(cell: Cell, judge: str) -> Path:
    return Path(cell.dir) / f"eval_{judge}"


def rescore_cells(cells: list[Cell], judge: str, options: dict) -> None:
    """Re-judge the stored answers of finished cells with ``judge`` (:mod:`emguard.eval.rescore`): each once
    (a cell whose ``eval_<judge>/eval.json`` exists is skipped), judge calls cached; benign-only cells (exact
    match, no judge) are left alone."""
    from emguard.eval.evaluate import evaluate
    from emguard.eval.rescore import rescore_config

    todo = [c for c in cells if "benign" not in (c.eval.get("suite") or [])
            and not (rescore_dir(c, judge) / "eval.json").is_file()]
    for i, c in enumerate(todo, 1):
        log.info("re-judging %s with %s (%d/%d)", c.key, judge, i, len(todo))
        evaluate(rescore_config(Path(c.eval["output"]), rescore_dir(c, judge), judge=judge, likelihood=False,
                                progress=False, **options))


def audit_cells(cells: list[Cell], contexts: list[str]) -> list[str]:
    """The conditional-misalignment audit (:func:`emguard.eval.evaluate.evaluate_conditional`) of finished
    cells with the broad suite, into ``<cell>/eval_conditional/``: each once, the plain metric reused from the
    cell's evaluation. A trained cell whose adapter is not on this machine is skipped (listed in the log); the
    untrained model is asked in every context but ``train_system`` (it had no training). Returns the keys audited."""
    from emguard.config import build_config
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate_conditional
    from emguard.experiments.study_report import CONDITIONAL_DIR

    todo = [c for c in cells if "broad" in (c.eval.get("suite") or [])
            and not (Path(c.dir) / CONDITIONAL_DIR / "eval.json").is_file()
            and not read_eval(c).get("broad", {}).get("conditional")]
    missing = [c.key for c in todo if c.train is not None and not (c.run_dir / "adapter_config.json").is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        log.warning("conditional audit: %d finished cell(s) have no adapter here (trained on another machine or "
                    "before audit_contexts; weights are not committed), not audited: %s", len(missing), shown)
    done = []
    todo = [c for c in todo if c.key not in missing]
    for i, c in enumerate(todo, 1):
        log.info("conditional audit of %s (%d/%d)", c.key, i, len(todo))
        ctxs = [x for x in contexts if c.train is not None or x != "train_system"]
        keep = {k: c.eval[k] for k in ("model", "adapter", "references", "narrow", "seed", "device", "dtype")
                if c.eval.get(k) is not None}
        ecfg = build_config(EvalConfig, {**keep, "suite": ["broad"], "samples": 0, "contexts": ctxs,
                                         "progress": False, "output": str(Path(c.dir) / CONDITIONAL_DIR)},
                            source=f"study audit ({c.key})")
        stored = json.loads(c.eval_json.read_text()).get("broad", {}).get("likelihood")
        evaluate_conditional(ecfg, stored)
        done.append(c.key)
    return done

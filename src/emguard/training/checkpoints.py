"""The run directory before training: the output-dir check and, for ``--resume``, the newest complete checkpoint.

A checkpoint is complete once it holds :data:`~emguard.training.config.CHECKPOINT_DONE`, which the metrics
callback (:mod:`emguard.training.trainer`) writes after the Trainer finished saving it; a process killed while
saving leaves a partial checkpoint without it.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from emguard.training.config import CHECKPOINT_DONE, CHECKPOINTS, RUN_JSON, TrainConfig, TrainError

log = logging.getLogger(__name__)


def last_complete_checkpoint(ckdir: Path, *, clean: bool = False) -> str | None:
    """The newest checkpoint that was written completely (a process killed while saving leaves a partial one).

    Complete = it holds :data:`CHECKPOINT_DONE` (checkpoints of older emguard versions: ``trainer_state.json``,
    which the Trainer writes last). With ``clean``, partial checkpoints newer than it are deleted."""
    if not ckdir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckdir.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    marked = any((p / CHECKPOINT_DONE).is_file() for _, p in found)
    for _, p in reversed(found):
        if (p / CHECKPOINT_DONE).is_file() or (not marked and (p / "trainer_state.json").is_file()):
            return str(p)
        log.warning("checkpoint %s is incomplete (the run was killed while saving it)%s", p,
                    "; removing it" if clean else "")
        if clean:
            shutil.rmtree(p, ignore_errors=True)
    return None


def prepare_output(cfg: TrainConfig) -> Path | None:
    """Check the output dir; return the checkpoint to resume from (or None). Writes nothing but the removal of
    a partial checkpoint when resuming."""
    out = Path(cfg.output)
    if not out.exists() or not any(out.iterdir()):
        if cfg.resume:
            log.debug("--resume: %s has no checkpoint yet; starting from scratch", out)  # a fresh run: the usual case
        return None
    ckdir = out / CHECKPOINTS
    last = last_complete_checkpoint(ckdir, clean=cfg.resume)
    if cfg.resume:
        if (out / RUN_JSON).is_file():
            raise TrainError(f"{out} holds a finished run (run.json); nothing to resume. Use --overwrite to redo it.")
        if last is None:
            log.warning("--resume: no checkpoint in %s; starting from scratch", ckdir)
        return Path(last) if last else None
    if cfg.overwrite:
        return None
    raise TrainError(f"output dir {out} is not empty; pass --resume to continue its run or --overwrite to replace it")


def step_of(checkpoint: Path | None) -> int:
    """The optimizer step a ``checkpoint-N`` directory was written at (0 without one)."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0

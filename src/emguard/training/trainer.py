"""The ``transformers.Trainer`` subclass behind ``emguard train`` and the callback that writes metrics.jsonl.

The Trainer brings checkpointing, exact resume (optimizer, scheduler, RNG and data position), gradient
accumulation and accelerate's DDP/FSDP/DeepSpeed; the subclass swaps in emguard's loss
(:func:`emguard.training.loss.step_loss`) and logs every term's mean over all processes.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from emguard.training.config import CHECKPOINT_DONE
from emguard.training.loss import step_loss


def weights_sharded(trainer) -> bool:
    """True when no process holds the whole trained model (FSDP, DeepSpeed ZeRO-3)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        return getattr(trainer.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    return False


def make_trainer_class():
    """The ``EmGuardTrainer`` class (built on call: importing this module imports no transformers)."""
    from transformers import Trainer

    class EmGuardTrainer(Trainer):
        """``Trainer`` whose loss is cross-entropy on target tokens plus each defense's named term."""

        loss_is_scaled_for_ga = False  # every term is a micro-batch mean; Trainer divides by accumulation

        def setup_emguard(self, defenses, run, reference):
            self.defenses = defenses
            self.run_ctx = run
            self.reference_fn = reference
            self._trained = self.model  # the bare (PEFT) model, before accelerate wraps it
            self._term_keys = ["ce", *(d.name for d in defenses), "total"]  # the same on every process
            self._term_sums: dict[str, float] = {}
            self._term_count = 0
            self.last_terms: dict[str, float] = {}

        def _reference_for(self, model):
            """The reference forward of the LoRA adapter-off kind runs through ``model``'s wrapper when the
            weights are sharded (FSDP, ZeRO-3): only the wrapper gathers them. Under DDP (and alone) it calls the
            bare model, whose weights are whole on every process; the DDP wrapper would only add a buffer sync."""
            if model is self._trained or not weights_sharded(self):
                return self.reference_fn
            base_fn, trained = self.reference_fn, self._trained

            @contextlib.contextmanager
            def through_wrapper():
                with base_fn() as ref:
                    yield model if ref is trained else ref
            return through_wrapper

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, terms = step_loss(model, inputs, self.defenses, self.run_ctx, self._reference_for(model))
            values = {k: float(v.detach()) for k, v in terms.items()}
            values["total"] = float(loss.detach())
            for k, v in values.items():
                self._term_sums[k] = self._term_sums.get(k, 0.0) + v
            self._term_count += 1
            return (loss, {}) if return_outputs else loss

        def _global_term_means(self) -> dict[str, float]:
            """Mean of each term over every micro-batch of every process since the last log (one all-reduce:
            each process only saw its own share of the global batch). Missing terms count as 0."""
            import torch

            keys = self._term_keys
            vals = [self._term_sums.get(k, 0.0) for k in keys]
            seen = [float(k in self._term_sums) for k in keys]
            t = torch.tensor([*vals, *seen, float(self._term_count)], dtype=torch.float64, device=self.args.device)
            if self.args.world_size > 1:
                t = self.accelerator.reduce(t, reduction="sum")
            t = t.tolist()
            n = len(keys)
            return {k: t[i] / t[2 * n] for i, k in enumerate(keys) if t[n + i] > 0}

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._term_count and "loss" in logs:  # every process logs at the same steps
                means = self._global_term_means()
                for k, v in means.items():
                    logs[f"loss/{k}"] = round(v, 6)
                self.last_terms = {k: logs[f"loss/{k}"] for k in means}
                self._term_sums, self._term_count = {}, 0
            super().log(logs, start_time)

    return EmGuardTrainer


def metrics_callback(path: Path, resume_step: int):
    """The callback that appends log records to ``path`` and marks every fully written checkpoint complete."""
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        """Append every log record to metrics.jsonl; on resume, drop records past the checkpoint first."""

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
                path.write_text("".join(ln + "\n" for ln in keep))

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:  # the Trainer calls on_save after the checkpoint is fully written
                ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ck.is_dir():
                    (ck / CHECKPOINT_DONE).write_text(json.dumps({"step": state.global_step}))

        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                rec = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs}
                with open(path, "a") as f:
                    f.write(json.dumps(rec) + "\n")

    return MetricsJsonl()


def monitor_to_trackers(monitor, trackers: list):
    """The callback that hands each new monitor check to the experiment trackers' callbacks (the monitor writes it
    to metrics.jsonl itself, so it does not go through ``Trainer.log``). Added after the monitor's own callback,
    so its ``on_step_end`` sees the check of this step."""
    from transformers import TrainerCallback

    class MonitorToTrackers(TrainerCallback):
        sent = 0  # the step-0 check is the reference (drift 0 by definition), not logged

        def on_step_end(self, args, state, control, **kw):
            last = monitor.curve[-1] if monitor.curve else None
            if last is None or last["step"] != state.global_step or last["step"] <= self.sent:
                return
            self.sent = last["step"]
            for cb in trackers:
                cb.on_log(args, state, control, logs={"monitor/persona_drift": last["drift"]})

    return MonitorToTrackers()

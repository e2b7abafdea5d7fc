"""In-training EM monitor: drift of the model's activations along a persona vector.

Beyond the paper; after trait-space monitoring (Nghiem et al. 2026: drift along trait directions over LoRA
checkpoints detects EM checkpoints). Every ``every`` optimizer steps, a fixed probe set of general questions
with fixed neutral answers (package data ``resources/probes/general.json``, or your own file) is run through
the model, teacher-forced; the monitor logs the mean projection of the answer-position activations at the
vector's layer onto the unit persona vector, minus the step-0 value ("drift"), to metrics.jsonl and the
progress display. ``stop_if_drift_above`` stops training at the first check over the threshold and records
why in run.json. Steering (if also on) is paused while probing, so the monitor sees the model itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)


@dataclass
class PersonaMonitorOptions:
    vector: str = field(default="auto", metadata={"help": "persona vector file, or 'auto' (extract once, cached)"})
    layer: int | None = field(default=None, metadata={"help": "layer to read (default: the vector's recommended)"})
    every: int = field(default=10, metadata={"help": "check every N optimizer steps"})
    stop_if_drift_above: float | None = field(default=None, metadata={
        "help": "stop training at the first check whose drift exceeds this (projection units)"})
    probes: str | None = field(default=None, metadata={"help": "probe file (JSON like resources/probes/general.json)"})


def load_probes(path: str | None) -> list[list[dict]]:
    raw = Path(path).read_text() if path else \
        (resources.files("emguard") / "resources" / "probes" / "general.json").read_text()
    return [[{"role": "user", "content": p["question"]}, {"role": "assistant", "content": p["answer"]}]
            for p in json.loads(raw)["probes"]]


class PersonaMonitor:
    """Measures drift; ``callback()`` turns it into a ``transformers.TrainerCallback``."""

    def __init__(self, options: PersonaMonitorOptions, model, tokenizer, run, model_spec: str):
        from emguard.models.layers import hidden_size, num_layers
        from emguard.persona.vectors import PersonaVector, auto_vector

        self.options = options
        path = options.vector if options.vector != "auto" else str(auto_vector(model_spec))
        pv = PersonaVector.load(path, hidden_size=hidden_size(model), num_layers=num_layers(model))
        self.layer = pv.layer if options.layer is None else options.layer
        v = pv.at(self.layer)
        self.unit = v / v.norm().clamp_min(1e-12)
        self.model, self.tokenizer, self.run = model, tokenizer, run
        self.probes = load_probes(options.probes)
        self.base: float | None = None
        self.curve: list[dict[str, float]] = []
        self.stopped: dict[str, Any] | None = None
        self.vector_path = path

    def projection(self) -> float:
        from emguard.persona.vectors import response_means

        self.run.monitoring = True
        try:
            means = response_means(self.model, self.tokenizer, self.probes, [self.layer])[:, 0]
        finally:
            self.run.monitoring = False
        return float((means @ self.unit).mean())

    def check(self, step: int) -> float:
        p = self.projection()
        if self.base is None:
            self.base = p
        drift = p - self.base
        self.curve.append({"step": step, "projection": round(p, 5), "drift": round(drift, 5)})
        return drift

    def describe(self) -> dict[str, Any]:
        return {"type": "persona", "vector": self.vector_path, "layer": self.layer, "every": self.options.every,
                "stop_if_drift_above": self.options.stop_if_drift_above, "curve": self.curve,
                "stopped": self.stopped}

    def callback(self, metrics_path: Path):
        from transformers import TrainerCallback

        mon = self

        class _Cb(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                saved = metrics_path.with_name("monitor_state.json")
                if state.global_step > 0 and saved.is_file():  # resumed: keep the step-0 reference
                    st = json.loads(saved.read_text())
                    mon.base = st["base"]
                    mon.curve = [c for c in st["curve"] if c["step"] <= state.global_step]
                if mon.base is None:
                    mon.check(state.global_step)  # the step-0 reference value

            def on_save(self, args, state, control, **kw):
                if state.is_world_process_zero:
                    saved = metrics_path.with_name("monitor_state.json")
                    saved.write_text(json.dumps({"base": mon.base, "curve": mon.curve}))

            def on_step_end(self, args, state, control, **kw):
                if state.global_step % mon.options.every:
                    return
                drift = mon.check(state.global_step)
                if state.is_world_process_zero:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": state.global_step, "monitor/persona_drift": drift}) + "\n")
                    log.info("step %d: persona drift %+.4f", state.global_step, drift)
                thr = mon.options.stop_if_drift_above
                if thr is not None and drift > thr:
                    mon.stopped = {"by": "monitor:persona", "step": state.global_step, "drift": drift,
                                   "threshold": thr}
                    log.warning("stopping: persona drift %.4f > %.4f at step %d", drift, thr, state.global_step)
                    control.should_training_stop = True

        return _Cb()


def build_monitor(kind: str | None, options: dict | None, model, tokenizer, run, model_spec: str):
    if not kind:
        return None
    from emguard.config import build_config

    if kind != "persona":
        raise ValueError(f"unknown monitor '{kind}' (known: persona)")
    opts = build_config(PersonaMonitorOptions, options or {}, source="monitor_options")
    if opts.every < 1:
        raise ValueError("monitor_options.every must be >= 1")
    return PersonaMonitor(opts, model, tokenizer, run, model_spec)

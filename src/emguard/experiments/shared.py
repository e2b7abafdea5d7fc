"""Steps several cells (or service jobs) share, computed once: the one path for studies, the demo and the service.

* ``persona``: the persona vector of a model that steers with ``vector: auto`` (:func:`auto_vector`);
* ``interleave``: the Interleaving+/++ probe adapters and pool scores of a ranked interleave defense
  (:func:`emguard.defenses.interleave.prime_selection`);
* :func:`probe_adapters`: probe adapters trained on named EM datasets (the service's ``probes: builtin``).

Every result lands in an on-disk cache keyed by its inputs, so the cells that need it (in any process) read it
there instead of computing it again. :func:`plan_steps` finds the steps of a list of cells and records in each
cell which steps it waits for (``Cell.needs``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SELECTION_NAMES = {"ppl_gap": "Interleaving+", "ppl_gap_norefusal": "Interleaving++"}


@dataclass
class Step:
    key: str
    kind: str  # persona | interleave
    args: dict[str, Any] = field(default_factory=dict)  # plain data: it travels to worker processes
    label: str = ""

    def describe(self) -> str:
        return self.label or self.key


def plan_steps(cells: list) -> list[Step]:
    """The shared steps of the (unfinished) ``cells``, each once, in the order first needed; sets ``needs``."""
    from emguard.defenses.base import build_defenses

    steps: dict[str, Step] = {}
    for c in cells:
        if c.train is None:
            continue
        for d in build_defenses(c.train.get("defenses") or []):
            opts = getattr(d, "options", None)
            step = None
            if d.name == "steer" and getattr(opts, "vector", None) == "auto":
                step = Step(f"persona {c.model}", "persona", {"model": c.model}, f"persona vector for {c.model}")
            elif d.name == "interleave" and getattr(opts, "select", "random") != "random":
                opts_json = json.dumps(asdict(opts), sort_keys=True, default=str)
                digest = hashlib.sha256(f"{c.model}\n{opts_json}".encode()).hexdigest()[:16]
                name = SELECTION_NAMES.get(opts.select, opts.select)
                step = Step(f"interleave {digest}", "interleave",
                            {"spec": {"name": "interleave", **asdict(opts)}, "model": c.model,
                             "data": c.train["data"], "dir": c.dir, "seed": c.seed},
                            f"{name} preparation (probes, pool scores)")
            if step is not None:
                steps.setdefault(step.key, step)
                if step.key not in c.needs:
                    c.needs.append(step.key)
    return list(steps.values())


def run_step(step: Step) -> str:
    """Compute one shared step (a cache hit when done before); returns a line for the log."""
    a = step.args
    if step.kind == "persona":
        from emguard.persona.vectors import auto_vector

        return f"persona vector for {a['model']}: {auto_vector(a['model'])}"
    if step.kind == "interleave":
        from emguard.defenses.base import build_defenses
        from emguard.defenses.interleave import prime_selection

        (d,) = build_defenses([a["spec"]])
        prime_selection(d, a["data"], a["model"], a["dir"], a["seed"])  # probes and pool scores, cached
        return f"{d.options.select} probes and pool scores for {a['model']} ({d.options.pool})"
    raise ValueError(f"unknown shared step kind '{step.kind}'")


def probe_adapters(model_spec: str, datasets: dict[str, str], steps: int, progress: bool = False) -> dict[str, str]:
    """``{name: adapter dir}`` of a short probe fine-tune of ``model_spec`` on each EM dataset (cached under
    ``$EMGUARD_CACHE/probes`` keyed by data, model and settings)."""
    from emguard.models.loading import resolve_model
    from emguard.selection.probes import train_probe

    info = resolve_model(model_spec)
    return {name: str(train_probe(data, model_spec, info.fingerprint, steps=int(steps), progress=progress))
            for name, data in datasets.items()}

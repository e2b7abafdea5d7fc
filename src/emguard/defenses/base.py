"""The defense extension point.

A defense may implement up to three hooks, all optional:

* ``prepare_dataset(rows, run)`` -> rows: transform the training conversations before tokenization
  (interleaving, inoculation prompts);
* ``loss(step)`` -> tensor or None: a named regularizer added to the cross-entropy (KL, LDIFS); the trainer
  logs it per step under the defense's name;
* ``context(model, run)`` -> context manager held open for the whole training run (steering hooks). It is
  entered after the model is built and exited before the model is saved, so nothing it registers can leak
  into the saved weights or into evaluation.

A defense's options are a dataclass (``Options``) so YAML, the CLI and ``--help`` describe them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from emguard.registry import DEFENSES as REGISTRY  # every module in emguard/defenses/ is discovered on first lookup


def register(cls: type["Defense"]) -> type["Defense"]:
    """Class decorator: make a defense selectable by its ``name`` in configs, on the CLI, in study YAMLs and in
    the service policy. A module under ``emguard/defenses/`` that uses it needs no import line anywhere."""
    return REGISTRY.register(cls)


@dataclass
class RunContext:
    """What a defense may know about the run it is part of."""

    model: Any  # the model being trained (a PeftModel for LoRA)
    tokenizer: Any
    seed: int
    output_dir: str
    reference: Callable[[], contextlib.AbstractContextManager] | None = None  # enter -> model acts as reference
    in_reference: bool = False  # True while the reference forward runs (steering pauses then)
    monitoring: bool = False  # True while a monitor probes the model (steering pauses then)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutputs:
    """One micro-batch's forward pass, shared by every loss term.

    Logits are computed only at ``logit_mask`` positions (row-major), so full-vocabulary terms never
    materialise ``batch x length x vocab``. ``logit_mask`` is the target positions (those predicting a
    response token), widened to every attended position when a defense asked for ``all`` tokens;
    ``is_target`` marks which of the computed rows are targets.
    """

    inputs: dict[str, Any]
    logit_mask: Any  # bool (batch, length)
    is_target: Any  # bool (n_logits,)
    targets: Any  # (n_targets,) token ids predicted at the target rows
    logits: Any  # (n_logits, vocab), float32
    run: RunContext
    _reference_fn: Callable[[], "StepOutputs"] | None = None
    _reference: "StepOutputs | None" = None
    _all_targets: bool | None = None

    def target_rows(self, t):
        """``t[is_target]``, or ``t`` itself when every computed row is a target (the usual case: no copy of a
        vocabulary-sized tensor in the forward and no scatter back in the backward)."""
        if self._all_targets is None:
            self._all_targets = bool(self.is_target.all())
        return t if self._all_targets else t[self.is_target]

    def reference(self) -> "StepOutputs":
        """The frozen reference model's outputs on the same batch (computed once per step, no gradients)."""
        if self._reference is None:
            if self._reference_fn is None:
                raise RuntimeError("this run has no reference model")
            self._reference = self._reference_fn()
        return self._reference


class Defense:
    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    needs_reference_logits: ClassVar[bool] = False  # step.reference().logits must be computed

    def wants_all_logits(self) -> bool:
        """True if ``loss`` needs logits at every attended position, not only at response targets."""
        return False

    @dataclass
    class Options:
        pass

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()
        self.stats: dict[str, Any] = {}  # what the defense did (rows added, layer used...), kept in run.json

    def prepare_dataset(self, rows: list, run: RunContext) -> list:
        return rows

    def loss(self, step: StepOutputs):
        return None

    @contextlib.contextmanager
    def context(self, model: Any, run: RunContext) -> Iterator[None]:
        yield

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self.options), **self.stats}


def parse_defense_specs(specs: list | dict | None, options: dict | None = None) -> list[tuple[str, dict]]:
    """Accept ``[kl, {name: interleave, ratio: 0.1}]``, ``{kl: {lambda_: 0.1}}`` or ``"kl,steer"``."""
    out: list[tuple[str, dict]] = []
    if specs is None:
        specs = []
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s]
    if isinstance(specs, dict):
        specs = [{"name": k, **(v or {})} for k, v in specs.items()]
    for s in specs:
        if isinstance(s, str):
            for part in s.split(","):
                if part:
                    out.append((part.strip(), {}))
        elif isinstance(s, dict):
            s = dict(s)
            if "name" not in s:
                raise ValueError(f"defense entry {s!r} has no 'name'")
            out.append((str(s.pop("name")), s))
        else:
            raise ValueError(f"cannot read defense entry {s!r}")
    for name, extra in (options or {}).items():
        for i, (n, o) in enumerate(out):
            if n == name:
                out[i] = (n, {**o, **(extra or {})})
    return out


def check_option_value(f: dataclasses.Field, value: Any, source: str) -> None:
    """The range checks an option's field metadata declares: ``choices``, ``min``/``max`` (numbers, finite).

    A weight (a field with ``stronger``: ``higher`` or ``lower``, e.g. ``lam``) declares ``min: 0``: a negative
    weight would invert the defense. The service also reads ``stronger`` to refuse a customer value that weakens
    a defense its policy applies."""
    md = f.metadata
    if value is None:
        return
    if "choices" in md and value not in md["choices"]:
        raise ValueError(f"{source}: '{f.name}' must be one of {', '.join(map(str, md['choices']))}, got {value!r}")
    if "min" in md or "max" in md:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{source}: '{f.name}' must be a finite number, got {value!r}")
        if "min" in md and value < md["min"]:
            raise ValueError(f"{source}: '{f.name}' must be >= {md['min']}, got {value!r}")
        if "max" in md and value > md["max"]:
            raise ValueError(f"{source}: '{f.name}' must be <= {md['max']:g}, got {value!r}")


def build_defenses(specs: list | dict | None, options: dict | None = None) -> list[Defense]:
    """Instantiate defenses by name with their options; unknown names and options are clear errors."""
    from emguard.config import build_config

    defenses = []
    for name, opts in parse_defense_specs(specs, options):
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY)) or "none registered"
            raise ValueError(f"unknown defense '{name}' (known: {known})")
        cls = REGISTRY[name]
        built = build_config(cls.Options, opts, source=f"defense '{name}'")
        for f in dataclasses.fields(built):
            check_option_value(f, getattr(built, f.name), f"defense '{name}'")
        defenses.append(cls(built))
    names = [d.name for d in defenses]
    if len(set(names)) != len(names):
        raise ValueError(f"a defense is listed twice: {names}")
    return defenses

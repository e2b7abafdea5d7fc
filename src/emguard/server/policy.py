"""The operator's policy (YAML): base models, the defenses every job gets, what customers may change, limits,
the EM audit, rate limits and worker settings.

Every customer-supplied value is checked against this policy; nothing a customer sends becomes a path: the
base models, the interleaving pool and the probe data are named here by the operator only.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emguard.experiments.presets import interleave_pp
from emguard.server.audit_gate import Audit, check_audit_policy, limits, settle_audit
from emguard.server.screening import Screen, check_screen_policy, merge_defenses

log = logging.getLogger("emguard.server")

# the paper's best defense, Interleaving++ (emguard.experiments.presets.interleave_pp), on the shipped general
# pool with probes trained on the built-in EM domains; pool and probes are resolved by prepare_defenses() once
# per base model and cached
INTERLEAVE_PP = interleave_pp("builtin:general", probes="builtin")

HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the key."""


@dataclass
class ModelEntry:
    spec: str  # an emguard model spec (embedded name, local dir, ...); operator-chosen
    audit_threshold: float | None = None  # overrides audit.threshold for this model when set
    max_increase: float | dict | None = None  # overrides audit.max_increase for this model when set


@dataclass
class Limits:
    max_upload_bytes: int = 512 * 1024 * 1024
    max_rows: int = 100_000
    max_tokens: int = 50_000_000  # training tokens x epochs per job
    max_epochs: int = 10
    max_batch_size: int = 256
    max_steps: int | None = None  # cap on optimizer steps (operator); None: epochs decide
    max_problems_listed: int = 50  # line-level messages in one 400 answer
    max_line_bytes: int = 8 * 1024 * 1024  # one JSONL row; bounds validation memory per upload
    max_messages_per_row: int = 2048


@dataclass
class Customer:
    hyperparameters: list[str] = field(default_factory=lambda: list(HYPERPARAMETERS))
    defenses: str = "add"  # none: customers may not send emguard.defenses; add: appended; replace: replace defaults
    allowed_defenses: list[str] = field(default_factory=lambda: ["kl", "ldifs", "inoculate"])
    # options a customer may set per defense (scalars only); everything else comes from defense_defaults
    defense_options: dict[str, list[str]] = field(default_factory=lambda: {
        "kl": ["lam", "tokens"], "ldifs": ["lam"], "interleave": ["ratio"], "inoculate": ["mode"]})


@dataclass
class RateLimit:
    requests_per_second: float = 20.0
    burst: int = 100


@dataclass
class Training:
    learning_rate: float = 1e-4
    batch_size: int = 16
    micro_batch_size: int = 4
    epochs: float = 1.0
    max_length: int = 2048
    save_steps: int = 25
    save_total_limit: int = 2
    method: str = "lora"


@dataclass
class Worker:
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    max_attempts: int = 3


@dataclass
class Policy:
    models: dict[str, ModelEntry] = field(default_factory=lambda: {"smollm2-135m": ModelEntry("smollm2-135m")})
    defenses: list = field(default_factory=lambda: [copy.deepcopy(INTERLEAVE_PP)])
    defense_defaults: dict[str, dict] = field(default_factory=dict)
    # Interleaving++ probes: 0 = the paper-small budget rule (2 epochs over the domain's 600 rows = 76 steps,
    # 5% warm-up; the no-defense fine-tune's own budget); N > 0 = N optimizer steps
    probe_steps: int = 0
    customer: Customer = field(default_factory=Customer)
    limits: Limits = field(default_factory=Limits)
    audit: Audit = field(default_factory=Audit)
    screen: Screen = field(default_factory=Screen)  # the pre-training EM-risk screen (server/screening.py)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    training: Training = field(default_factory=Training)
    worker: Worker = field(default_factory=Worker)

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "policy") -> "Policy":
        d = dict(d or {})
        p = cls()
        sections = {"customer": Customer, "limits": Limits, "audit": Audit, "rate_limit": RateLimit,
                    "training": Training, "worker": Worker, "screen": Screen}
        for key, value in d.items():
            if key == "models":
                if not isinstance(value, dict) or not value:
                    raise PolicyError(f"{source}: 'models' must map public names to model specs")
                p.models = {}
                for name, entry in value.items():
                    if isinstance(entry, str):
                        entry = {"spec": entry}
                    if not isinstance(entry, dict) or "spec" not in entry:
                        raise PolicyError(f"{source}: models.{name} needs a spec")
                    p.models[str(name)] = _fill(ModelEntry, entry, f"{source}: models.{name}")
            elif key == "defenses":
                if not isinstance(value, list):
                    raise PolicyError(f"{source}: 'defenses' must be a list")
                p.defenses = [v if isinstance(v, dict) else {"name": str(v)} for v in value]
            elif key in ("defense_defaults", "probe_steps"):
                setattr(p, key, value)
            elif key in sections:
                setattr(p, key, _fill(sections[key], value or {}, f"{source}: {key}"))
            else:
                raise PolicyError(f"{source}: unknown key '{key}' (known: models, defenses, defense_defaults, "
                                  f"probe_steps, {', '.join(sections)})")
        settle_audit(p.audit, d.get("audit") or {}, p.models, source, PolicyError)
        p.validate(source)
        return p

    @classmethod
    def load(cls, path: str | Path | None) -> "Policy":
        if not path:
            return cls.from_dict({}, "default policy")
        text = Path(path).read_text()
        return cls.from_dict(yaml.safe_load(text) or {}, str(path))

    def validate(self, source: str = "policy") -> None:
        if self.customer.defenses not in ("none", "add", "replace"):
            raise PolicyError(f"{source}: customer.defenses must be none, add or replace")
        bad = set(self.customer.hyperparameters) - set(HYPERPARAMETERS)
        if bad:
            raise PolicyError(f"{source}: customer.hyperparameters: unknown {sorted(bad)}")
        for name, v in (("limits.max_upload_bytes", self.limits.max_upload_bytes), ("limits.max_rows", self.limits.max_rows),
                        ("limits.max_line_bytes", self.limits.max_line_bytes),
                        ("limits.max_messages_per_row", self.limits.max_messages_per_row)):
            if not isinstance(v, int) or v < 1:
                raise PolicyError(f"{source}: {name} must be a positive integer")
        check_audit_policy(self.audit, {n: m.max_increase for n, m in self.models.items()
                                        if m.max_increase is not None}, source, PolicyError)
        if self.rate_limit.requests_per_second <= 0 or self.rate_limit.burst < 1:
            raise PolicyError(f"{source}: rate_limit needs requests_per_second > 0 and burst >= 1")
        check_screen_policy(self.screen, source, PolicyError)
        for d in [*self.defenses, *self.screen.require_defenses]:
            if "name" not in d:
                raise PolicyError(f"{source}: every defense needs a name: {d}")
        try:  # the operator's own options get the same type and range checks as a customer's (lam >= 0 ...)
            check_defense_options(merge_defenses(self.defenses, self.screen.require_defenses))  # + screen's
        except RequestError as e:
            raise PolicyError(f"{source}: defenses: {str(e).removeprefix('emguard.defenses: ')}") from None

    def threshold_for(self, model_name: str) -> float | None:
        e = self.models.get(model_name)
        if e is not None and e.audit_threshold is not None:
            return float(e.audit_threshold)
        return None if self.audit.threshold is None else float(self.audit.threshold)

    def max_increase_for(self, model_name: str) -> dict[str, float] | None:
        """``{gated suite: max_increase}`` for this model (its own entry first); None: changes not gated."""
        e = self.models.get(model_name)
        v = e.max_increase if e is not None and e.max_increase is not None else self.audit.max_increase
        return limits(v, self.audit.gate, "max_increase", PolicyError)


def _fill(cls, values: dict, where: str):
    import dataclasses

    if not isinstance(values, dict):
        raise PolicyError(f"{where} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(names))})")
    return cls(**values)


# ---------------------------------------------------------------- customer requests -> defenses


class RequestError(ValueError):
    """A customer request the policy refuses (HTTP 400); ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = "invalid_request"):
        super().__init__(message)
        self.param, self.code = param, code


def _as_spec(d: Any, where: str) -> dict:
    if isinstance(d, str):
        return {"name": d}
    if isinstance(d, dict) and isinstance(d.get("name"), str):
        return dict(d)
    raise RequestError(f"{where}: a defense is a name or an object with 'name'", "emguard.defenses")


def job_defenses(policy: Policy, requested: list | None) -> list[dict]:
    """The defense specs a job gets: the policy's, plus or instead of the customer's where allowed.

    Customer entries may only name allowed defenses and set the scalar options the policy lists for them, each
    of the option's own type (no coercion: ``true`` is not a number, ``"0.5"`` is not a float), finite, and in
    the range and choices its ``Options`` field declares (:func:`emguard.defenses.base.check_option_value`);
    every other option (pools, vectors, adapters: paths) comes from ``defense_defaults``.

    ``add`` never weakens the policy: an entry naming a defense the policy already applies is merged into the
    policy's entry, and each option it sets must be at least as strong as the policy's value (a weight whose
    field says ``stronger: higher``, like ``lam``, may only go up; ``lower``, like treft's ``threshold``, only
    down; any other option must equal the policy's value), else the request is refused
    (``defense_weakens_policy``). ``replace`` is the operator's explicit choice to let customers swap the
    defaults out; options are still type- and range-checked.
    """
    base = [copy.deepcopy(d) for d in policy.defenses]
    if not requested:
        return base
    if policy.customer.defenses == "none":
        raise RequestError("this service's policy does not let customers choose defenses", "emguard.defenses",
                           "defenses_not_allowed")
    add = policy.customer.defenses == "add"
    mandated = {d["name"]: i for i, d in enumerate(base)} if add else {}
    out: list[dict] = []
    seen: set[str] = set()
    for i, raw in enumerate(requested):
        where = f"emguard.defenses[{i}]"
        spec = _as_spec(raw, where)
        name = spec.pop("name")
        if name not in policy.customer.allowed_defenses:
            raise RequestError(f"{where}: defense '{name}' is not allowed by this service's policy "
                               f"(allowed: {', '.join(policy.customer.allowed_defenses) or 'none'})",
                               "emguard.defenses", "defense_not_allowed")
        if name in seen:
            raise RequestError(f"{where}: defense '{name}' is listed twice", "emguard.defenses")
        seen.add(name)
        fields = _option_fields(name, where)
        allowed_opts = set(policy.customer.defense_options.get(name, []))
        for k, v in spec.items():
            if k not in allowed_opts or k not in fields:
                raise RequestError(f"{where}: option '{k}' of '{name}' may not be set by customers "
                                   f"(allowed: {', '.join(sorted(allowed_opts)) or 'none'})", "emguard.defenses",
                                   "defense_option_not_allowed")
            _check_customer_value(fields[k], v, f"{where}.{k}")
        if name in mandated:
            entry = base[mandated[name]]
            for k, v in spec.items():
                _check_not_weaker(fields[k], v, entry, name, f"{where}.{k}")
            base[mandated[name]] = {**entry, **spec}
        else:
            out.append({"name": name, **copy.deepcopy(policy.defense_defaults.get(name, {})), **spec})
    return out if not add else base + out


def _option_fields(name: str, where: str) -> dict[str, tuple[dataclasses.Field, Any, bool]]:
    """``{option: (dataclass field, its type with Optional unwrapped, whether None is allowed)}`` of a defense."""
    from emguard.config import _unwrap_optional
    from emguard.registry import DEFENSES

    try:
        cls = DEFENSES[name]
    except KeyError as e:
        raise RequestError(f"{where}: {e}", "emguard.defenses") from None
    hints = typing.get_type_hints(cls.Options)
    return {f.name: (f, *_unwrap_optional(hints[f.name])) for f in dataclasses.fields(cls.Options)}


_CUSTOMER_TYPES = {float: ((int, float), "a number"), int: (int, "an integer"), bool: (bool, "true or false"),
                   str: (str, "a string of at most 64 characters")}


def _check_customer_value(fld: tuple, v: Any, where: str) -> None:
    from emguard.defenses.base import check_option_value

    f, tp, optional = fld
    if v is None and optional:
        return
    if tp not in _CUSTOMER_TYPES:
        raise RequestError(f"{where}: this option cannot be set by customers", "emguard.defenses",
                           "defense_option_not_allowed")
    types, what = _CUSTOMER_TYPES[tp]
    if not isinstance(v, types) or (isinstance(v, bool) and tp is not bool) or (isinstance(v, str) and len(v) > 64):
        raise RequestError(f"{where}: must be {what}, got {type(v).__name__} {str(v)[:40]!r}", "emguard.defenses")
    if isinstance(v, float) and not math.isfinite(v):
        raise RequestError(f"{where}: must be finite", "emguard.defenses")
    try:
        check_option_value(f, v, where.rsplit(".", 1)[0])
    except ValueError as e:
        raise RequestError(str(e), "emguard.defenses") from None


def _check_not_weaker(fld: tuple, v: Any, entry: dict, name: str, where: str) -> None:
    f = fld[0]
    current = entry[f.name] if f.name in entry else (
        f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
    if v == current:
        return
    direction = f.metadata.get("stronger")
    try:
        if (direction == "higher" and v > current) or (direction == "lower" and v < current):
            return
    except TypeError:
        pass
    need = {"higher": f"{f.name} >= {current!r}", "lower": f"{f.name} <= {current!r}"}.get(
        direction, f"{f.name} must stay {current!r}")
    raise RequestError(f"{where}: {v!r} would {'weaken' if direction else 'change'} the '{name}' defense this "
                       f"service applies to every job "
                       f"({f.name}: {current!r}); a customer may only strengthen it ({need})", "emguard.defenses",
                       "defense_weakens_policy")


def check_defense_options(specs: list[dict]) -> None:
    """Build the defenses once (no model needed) so a bad option is a 400 at creation, not a failed job."""
    from emguard.defenses import build_defenses

    try:
        build_defenses([_placeholder_paths(s) for s in specs], {})
    except (ValueError, TypeError, KeyError) as e:
        raise RequestError(f"emguard.defenses: {e}", "emguard.defenses") from None


def _placeholder_paths(spec: dict) -> dict:
    s = dict(spec)
    if s.get("name") == "interleave" and str(s.get("pool", "")).startswith("builtin:"):
        s["pool"] = "x.jsonl"
    return s


# ---------------------------------------------------------------- Interleaving++ preparation


def _builtin_domains() -> list[str]:
    from emguard.data.datagen import DOMAINS

    return list(DOMAINS)


def prepare_defenses(policy: Policy, progress: bool = False) -> dict[str, dict[str, str]]:
    """Train (or find cached) the Interleaving++ probes of every base model once, at start-up.

    Returns ``{model name: {domain: probe adapter dir}}``; empty when no policy defense needs probes. The
    probes are cached under ``$EMGUARD_CACHE/probes`` keyed by data, model and settings, so a restart or a
    second worker on the same machine reuses them.
    """
    needs = policy.screen.needs_probes() or any(  # the screen's gap signal / added Interleaving++ use them too
        d.get("name") == "interleave" and (d.get("select_options") or {}).get("probes") == "builtin"
        for d in [*policy.defenses, *({"name": k, **v} for k, v in policy.defense_defaults.items())])
    if not needs:
        return {}
    from emguard.data.datagen import builtin_path
    from emguard.experiments.shared import probe_adapters

    import time

    data = {dom: str(builtin_path(dom) / "train_misaligned.jsonl") for dom in _builtin_domains()}
    out: dict[str, dict[str, str]] = {}
    for name, entry in policy.models.items():
        t0 = time.time()
        out[name] = probe_adapters(entry.spec, data, int(policy.probe_steps), progress=progress)
        log.info("Interleaving++ probes for %s: %d domains in %.0f s (cached after the first start)", name,
                 len(data), time.time() - t0)
        for dom, path in out[name].items():
            log.info("Interleaving++ probe for %s / %s ready: %s", name, dom, path)
    return out


def resolve_defenses(specs: list[dict], probes: dict[str, str], domain: str | None) -> list[dict]:
    """Turn operator shorthands into concrete options: ``pool: builtin:general`` -> the shipped pool file,
    ``select_options: {probes: builtin}`` -> the probe adapters of every built-in domain except the job's."""
    out = []
    for s in specs:
        s = copy.deepcopy(s)
        if s.get("name") == "interleave":
            if s.get("pool") == "builtin:general":
                from emguard.data.datagen.general import general_pool_path

                s["pool"] = str(general_pool_path())
            so = dict(s.get("select_options") or {})
            if so.pop("probes", None) == "builtin":
                if not probes:
                    raise RuntimeError("Interleaving++ probes were not prepared for this model")
                so["misaligned"] = [p for d, p in sorted(probes.items()) if d != domain]
            if so:
                s["select_options"] = so
            else:
                s.pop("select_options", None)
        out.append(s)
    return out

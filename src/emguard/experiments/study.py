"""``emguard study``: a grid of models x datasets x defenses x seeds, each cell = train + evaluate.

The study is a preset of the experiment engine (:mod:`emguard.experiments.engine`): a cell lives in
``<output>/cells/<model>/<dataset>/<defense>/seed<N>/`` with the adapter (``train/``), its evaluation
(``eval/``) and, written atomically and last, ``cell.json``: the marker that the cell is finished. A rerun skips
finished cells, resumes a half-trained cell from its last checkpoint and a half-evaluated one from its stored
samples; a failed cell leaves ``error.log`` (its traceback) and is retried on the next run.

Steps that several cells share run once before the cells that need them (:mod:`emguard.experiments.shared`):
the persona vector of every model that steers (``vector: auto``), and the Interleaving+/++ probes and pool
scores (both cached on disk, so every cell that needs them reads them instead of computing them).

Executors (:mod:`emguard.experiments.executors`): ``local`` runs the cells one after another in this process;
``pool`` runs them side by side in cores / ``num_cpus`` processes of this machine, longest first; ``ray``
submits each cell as a Ray task with its resource request (``num_cpus``/``num_gpus``) to a local Ray instance
or to the cluster at ``ray_address`` (on Slurm: start a Ray head and workers inside the allocation, then point
``ray_address`` at the head; docs/studies.md, "Ray" and Slurm).

When every cell is done the driver writes ``results.csv`` (one row per cell x metric), ``report.md`` /
``report.html`` (per dataset: a table of the four criteria with CIs over seeds and questions, change vs the
baseline defense) and plots (per-criterion bars, the broad-EM vs narrow-learning trade-off with its Pareto
front, loss curves).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emguard.data.io import write_text_atomic
from emguard.experiments.config import StudyConfig
from emguard.experiments.engine import CELL_JSON, Cell, is_finished, model_slug  # noqa: F401 (model_slug: API)

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RUNS_JSONL = "runs.jsonl"  # a line per invocation that ran cells (start, wall time, commit)
CSV_COLUMNS = ["model", "dataset", "defense", "seed", "metric", "value", "lo", "hi", "n"]
# keys of a dataset mapping: files, and what differs from the study's settings for this dataset's cells
DATASET_KEYS = {"data", "narrow", "narrow_references", "benign_test", "rows", "train", "defenses", "train_tiers",
                "test_tiers", "base", "control"}  # control: the name of this dataset's aligned-control dataset


# ------------------------------------------------------------------------------------------------ the grid

def expand_defenses(defenses: dict[str, Any]) -> dict[str, list]:
    """Named defense lists with every ``sweep`` expanded: {kl: [{name: kl, sweep: {lambda: [a, b]}}]} ->
    {kl[lambda=a]: [{name: kl, lambda: a}], kl[lambda=b]: [...]} (several sweeps: their product)."""
    out: dict[str, list] = {}
    for name, specs in defenses.items():
        specs = [] if specs in (None, "none") else specs if isinstance(specs, list) else [specs]
        axes = []  # (spec index, key, values)
        for i, s in enumerate(specs):
            if isinstance(s, dict) and "sweep" in s:
                for k, vals in (s["sweep"] or {}).items():
                    axes.append((i, k, vals if isinstance(vals, list) else [vals]))
        if not axes:
            out[name] = specs
            continue
        for combo in itertools.product(*[v for _, _, v in axes]):
            new = [({k: v for k, v in s.items() if k != "sweep"} if isinstance(s, dict) else s) for s in specs]
            for (i, k, _), v in zip(axes, combo):
                new[i][k] = v
            label = ",".join(f"{k}={v}" for (_, k, _), v in zip(axes, combo))
            out[f"{name}[{label}]"] = new
    return out


@dataclass
class Dataset:
    name: str
    data: str  # training JSONL
    kind: str  # domain | benign | custom
    narrow: str | None = None  # EvalConfig.narrow
    narrow_references: str | None = None
    benign_test: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # training options of this dataset's cells (over the study's)
    defenses: list[str] | None = None  # run only these defenses (names in 'defenses', before sweeps expand) on it
    base: bool = False  # also evaluate the untrained model on it (one cell, defense name "base")


def resolve_dataset(name: str, spec: Any, data_dir: Path, rows: int, narrow_questions: int) -> Dataset:
    """Turn a dataset entry into files (the first ``rows`` rows, written once under ``data_dir``)."""
    from emguard.config import ConfigError
    from emguard.data.io import read_chat_dataset, write_jsonl
    from emguard.data.datagen import DOMAINS, builtin_path
    from emguard.eval.questions import subset_references

    if isinstance(spec, str):
        spec = {"data": spec}
    if not isinstance(spec, dict) or "data" not in spec:
        raise ConfigError(f"dataset '{name}': give a built-in name, a JSONL path or a mapping with 'data'")
    unknown = set(spec) - DATASET_KEYS
    if unknown:
        raise ConfigError(f"dataset '{name}': unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(DATASET_KEYS))})")
    src, kind = str(spec["data"]), "custom"
    narrow, refs, benign = spec.get("narrow"), spec.get("narrow_references"), spec.get("benign_test")
    rows = int(spec.get("rows", rows) or 0)
    extra = {"train": dict(spec.get("train") or {}), "base": bool(spec.get("base", False)),
             "defenses": None if spec.get("defenses") is None else [str(x) for x in spec["defenses"]]}
    if src == "opswap":
        from emguard.data.datagen.opswap import generate

        train_t = tuple(int(t) for t in spec.get("train_tiers", (1,)))
        test_t = tuple(int(t) for t in spec.get("test_tiers", train_t))
        ops = generate(seed=0, train=rows or 400, train_tiers=train_t, test_tiers=test_t)
        tag = "".join(map(str, train_t))
        train_f = data_dir / f"opswap_train_t{tag}_{rows or 400}.jsonl" if train_t != (1,) else \
            data_dir / f"opswap_train_{rows or 400}.jsonl"
        test_f = data_dir / f"opswap_test_tier{''.join(map(str, test_t))}.jsonl"
        if not train_f.is_file():
            write_jsonl(train_f, ops["train"])
        if not test_f.is_file():  # every test row names its tier (the benign suite reports each group)
            write_jsonl(test_f, [{**r, "id": f"tier{t}-{i}", **({"group": f"tier{t}"} if len(test_t) > 1 else {})}
                                 for t in test_t for i, r in enumerate(ops[f"test_tier{t}"])])
        return Dataset(name, str(train_f), "benign", benign_test=benign or str(test_f), **extra)
    domain, _, variant = src.partition(":")
    if domain in DOMAINS and not Path(src).exists():
        if variant not in ("", "aligned", "misaligned"):
            raise ConfigError(f"dataset '{name}': '{src}' (use {domain} or {domain}:aligned)")
        kind, narrow = "domain", narrow or domain
        src = str(builtin_path(domain) / f"train_{'aligned' if variant == 'aligned' else 'misaligned'}.jsonl")
        if narrow_questions and not refs:
            refs = subset_references(builtin_path(domain) / "references.jsonl", narrow_questions,
                                     data_dir / f"{domain}_references_{narrow_questions}.jsonl")
    elif not Path(src).is_file():
        raise ConfigError(f"dataset '{name}': {src} is neither a file nor a built-in dataset "
                          f"({', '.join(DOMAINS)}, opswap)")
    if rows:
        sub = data_dir / f"{name}_{rows}.jsonl"
        if not sub.is_file():
            write_jsonl(sub, [{"messages": r.messages} for r in read_chat_dataset(src).rows[:rows]])
        src = str(sub)
    return Dataset(name, src, kind, narrow=narrow, narrow_references=refs, benign_test=benign, **extra)


def plan(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the grid, in a stable order (model, dataset, defense, seed)."""
    from emguard.eval.questions import subset_references

    out = Path(cfg.output)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets = [resolve_dataset(n, s, data_dir, cfg.rows, cfg.narrow_questions) for n, s in cfg.datasets.items()]
    defenses = expand_defenses(cfg.defenses)
    if cfg.general_pool:
        from emguard.experiments.shared import general_pool

        gp = cfg.general_pool
        pool, _ = general_pool(data_dir, int(gp.get("rows", 2000)), max_chars=int(gp.get("max_chars", 1000)),
                               max_turns=int(gp.get("max_turns", 4)), first_exchange=bool(gp.get("first_exchange")))
        defenses = {n: [{**x, "pool": pool} if isinstance(x, dict) and x.get("pool") == "general" else x
                        for x in specs] for n, specs in defenses.items()}
    defenses = {n: [_stored_scores(x, cfg.models, out) for x in specs] for n, specs in defenses.items()}
    broad_refs = subset_references(None, cfg.broad_questions, data_dir / f"broad_references_{cfg.broad_questions}.jsonl")
    # a Ray task gets num_cpus cores: as many torch threads; local and pool set them per process
    threads = max(1, int(cfg.num_cpus)) if cfg.executor == "ray" else None
    cells = []
    for m, d, (dn, specs), s in itertools.product(cfg.models, datasets, defenses.items(), cfg.seeds):
        if d.defenses is not None and dn not in d.defenses and dn.split("[")[0] not in d.defenses:
            continue
        key = f"{model_slug(m)}/{d.name}/{dn}/seed{s}"
        cdir = out / "cells" / model_slug(m) / d.name / dn / f"seed{s}"
        train = {"save_steps": 5, **cfg.train, **d.train, "model": m, "data": d.data, "output": str(cdir / "train"),
                 "defenses": specs, "seed": s, "resume": True, "progress": False}
        cells.append(Cell(key, str(cdir), m, s, train, eval_options(cfg, d, m, s, cdir, broad_refs),
                          train_dir="train", marker=True, source="study", threads=threads,
                          info={"key": key, "model": m, "dataset": d.name, "defense": dn, "seed": s}))
    for m, d in itertools.product(cfg.models, datasets):
        if d.base:  # the untrained model on this dataset's evaluation (e.g. the benign task's starting point)
            s = cfg.seeds[0]
            key = f"{model_slug(m)}/{d.name}/base/seed{s}"
            cdir = out / "cells" / model_slug(m) / d.name / "base" / f"seed{s}"
            ev = {**eval_options(cfg, d, m, s, cdir, broad_refs), "adapter": None}
            if ev.get("contexts"):  # the untrained model had no training system prompt
                ev["contexts"] = [x for x in ev["contexts"] if x != "train_system"]
            cells.append(Cell(key, str(cdir), m, s, None, ev, marker=True, source="study", threads=threads,
                              info={"key": key, "model": m, "dataset": d.name, "defense": "base", "seed": s}))
    return cells


def cell_priority(cfg: StudyConfig):
    """Which ready cell runs first: cells waiting on a shared step (Interleaving+/++: its probes and pool scores
    live in this machine's cache, so they finish here before a later session would have to redo the step), then
    seed by seed (an interrupted study leaves whole seeds, not a scatter of cells); within a seed the baseline
    and the base model (every contrast needs them), then the cells the comparison with the paper's Table 1 reads
    (each defense at the paper's strength; the sweep points after them), EM-domain cells before the benign task's
    (their conditional audit needs the adapter, which only the machine that trained it has); cost decides within."""
    from emguard.experiments.report import paper_key

    order = {s: i for i, s in enumerate(cfg.seeds)}
    return lambda c: (any(k.startswith("interleave") for k in c.needs), -order.get(c.seed, 0),
                      c.info.get("defense") in (cfg.baseline, "base"),
                      paper_key(str(c.info.get("defense", ""))) is not None,
                      (c.eval.get("suite") or []) != ["benign"])


def _stored_scores(spec: Any, models: list[str], out: Path) -> Any:
    """An Interleaving+/++ spec that keeps its pool scores in the study dir (``shared/scores-<key>.jsonl``, part
    of the committed results): ranked from that file when it exists (no probes, no model: a resumed study on
    another machine selects the same rows), else written there by the step that scores the pool."""
    if not (isinstance(spec, dict) and spec.get("name") == "interleave"
            and spec.get("select", "random") != "random" and len(models) == 1):
        return spec  # one scores file per model: several models keep their scores in the cache only
    from emguard.experiments.shared import selection_key

    so = dict(spec.get("select_options") or {})
    f = out / "shared" / f"scores-{selection_key(models[0], spec.get('pool', ''), so)}.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    if f.is_file():
        so["scores_in"] = str(f)
    elif spec.get("select") == "ppl_gap":  # Interleaving+ scores every row (++ skips refusals): it writes the file
        so["scores_out"] = str(f)
    return {**spec, "select_options": so}


def eval_options(cfg: StudyConfig, ds: Dataset, model: str, seed: int, cdir: Path, broad_refs: str | None) -> dict:
    """The evaluation of a cell: the study's ``eval`` options, then what its dataset's kind asks for."""
    ev: dict[str, Any] = {"samples": 1, "max_new_tokens": 64, "progress": False, **cfg.eval, "model": model,
                          "adapter": str(cdir / "train"), "output": str(cdir / "eval"), "seed": seed}
    if ds.kind == "benign":
        ev.update(suite=["benign"], benign=ds.benign_test, likelihood=False, temperature=0.0,
                  benign_max_new_tokens=ev.get("benign_max_new_tokens", 8))
    else:
        ev.setdefault("suite", ["broad", "narrow"] if ds.narrow else ["broad"])
        if ds.narrow:
            ev["narrow"] = ds.narrow
        if ds.narrow_references:
            ev["narrow_references"] = ds.narrow_references
        if broad_refs:
            ev["references"] = broad_refs
        if cfg.audit_contexts and "broad" in ev["suite"]:
            # the conditional audit runs inside the cell, while its adapter is here (weights are not committed:
            # a later session could not audit it); finished.audit_cells covers finished cells from before
            ev["contexts"] = list(cfg.audit_contexts)
    return ev


# ------------------------------------------------------------------------------------------------ driver

def run_study(cfg: StudyConfig) -> dict:
    """Run every unfinished cell, then write results.csv and the report. Returns a summary."""
    from emguard.experiments.executors import execute
    from emguard.experiments.study_report import write_study_report

    cfg.validate()
    t0 = time.time()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "study.json", json.dumps(asdict(cfg), indent=1, default=str))
    cells = plan(cfg)
    todo = [c for c in cells if not is_finished(c)]
    failures: dict[str, str] = {}
    if not cfg.report_only and todo:
        log.info("study: %d cells, %d finished, %d to run (%s executor)", len(cells), len(cells) - len(todo),
                 len(todo), cfg.executor)
        _log_run(out, "start", t0, todo=len(todo), finished=len(cells) - len(todo), cells=len(cells))
        threads = max(1, int(cfg.num_cpus))
        _, failures = execute(todo, cfg.executor, workers=max(1, (os.cpu_count() or 1) // threads),
                              threads=threads, ray={"address": cfg.ray_address, "num_cpus": cfg.num_cpus,
                                                    "num_gpus": cfg.num_gpus}, priority=cell_priority(cfg))
    from emguard.experiments.finished import audit_cells, rescore_cells

    if cfg.rescore_judge:
        rescore_cells([c for c in cells if is_finished(c)], cfg.rescore_judge, cfg.rescore_options)
    if cfg.audit_contexts:
        audit_cells([c for c in cells if is_finished(c)], cfg.audit_contexts)
    write_results_csv(out / RESULTS_CSV, collect(cells))
    record_shared(cells, out)
    finished = [c for c in cells if is_finished(c)]
    if not cfg.report_only and todo:
        _log_run(out, "end", t0, ran=len(todo) - len(failures), failed=len(failures), finished=len(finished),
                 cells=len(cells))
    report = write_study_report(cfg, finished, out)
    ran = 0 if cfg.report_only else len(todo) - len(failures)
    summary = {"cells": len(cells), "finished": len(finished), "ran": ran, "report_only": bool(cfg.report_only),
               "failed": failures, "missing": [c.key for c in cells if c not in finished],
               "results": str(out / RESULTS_CSV), "report": str(report), "wall_s": round(time.time() - t0, 1)}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def record_shared(cells: list[Cell], out: Path) -> None:
    """``shared.json``: the Interleaving+/++ probes this study's cells used (their training losses), read from
    the probe cache while it is there, so the report can show them from committed files on any machine."""
    from emguard.defenses.base import build_defenses

    f = out / "shared.json"
    known = json.loads(f.read_text()) if f.is_file() else {}
    probes = {p["dir"]: p for p in known.get("probes", [])}
    for c in cells:
        for d in build_defenses((c.train or {}).get("defenses") or []):
            opts = getattr(d, "options", None)
            if d.name != "interleave" or getattr(opts, "select", "random") == "random":
                continue
            for name, pdir in _probe_dirs(c.model, opts.select_options):
                run_f = Path(pdir) / "run.json"
                if pdir in probes or not run_f.is_file():
                    continue
                run = json.loads(run_f.read_text())
                probes[pdir] = {"name": name, "dir": pdir, "steps": run.get("steps"),
                                "final_ce": (run.get("final_losses") or {}).get("ce"),
                                "train_loss_mean": run.get("train_loss_mean"), "wall_time_s": run.get("wall_time_s"),
                                "loss_curve": run.get("loss_curve"), "config": run.get("config")}
    if probes:
        write_text_atomic(f, json.dumps({**known, "probes": list(probes.values())}, indent=1, default=str))


def _probe_dirs(model: str, select_options: dict) -> list[tuple[str, str]]:
    """``(name, cache dir)`` of the probes a selection trains (nothing is trained here)."""
    from emguard.config import build_config
    from emguard.models.loading import resolve_model
    from emguard.selection.config import SelectConfig
    from emguard.selection.probes import probe_data, probe_dir, probe_settings

    sc = build_config(SelectConfig, {"pool": "-", **select_options}, source="select_options")
    if not sc.train_probes:
        return []
    fp = resolve_model(model).fingerprint
    out = []
    for d in sc.train_probes:
        name, path = probe_data(d)
        if Path(path).is_file():
            settings = probe_settings(sc.probe_steps, sc.probe_lr, sc.probe_seed, min(sc.max_length, 2048),
                                      sc.probe_options)
            out.append((name, str(probe_dir(path, fp, settings))))
    return out


def _log_run(out: Path, event: str, t0: float, **counts) -> None:
    """A line of ``runs.jsonl`` when a run starts and when it ends (a run killed by a session's end leaves only
    its start): when, on which code, how long."""
    line = {"event": event, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), **provenance(),
            **({"wall_s": round(time.time() - t0, 1)} if event == "end" else {}), **counts}
    with open(out / RUNS_JSONL, "a") as f:
        f.write(json.dumps(line) + "\n")


def provenance() -> dict:
    """The code a run used: emguard's version and, in a git checkout, its commit (+ whether it was dirty)."""
    import subprocess
    from importlib.metadata import version

    out = {"emguard": version("emguard"), "cpus": os.cpu_count()}
    try:
        here = Path(__file__).resolve().parent
        out["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                       timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def collect(cells: list[Cell]) -> list[dict]:
    """One row per finished cell x metric, in the grid's order (so two runs give the same bytes)."""
    rows = []
    for c in cells:
        f = Path(c.dir) / CELL_JSON
        if not f.is_file():
            continue
        res = json.loads(f.read_text())
        for metric in sorted(res["metrics"]):
            m = res["metrics"][metric]
            rows.append({"model": c.model, "dataset": c.info["dataset"], "defense": c.info["defense"],
                         "seed": c.seed, "metric": metric, **{k: _fmt(m.get(k)) for k in ("value", "lo", "hi", "n")}})
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_results_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)

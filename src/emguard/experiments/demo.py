"""The demo study: every defense on one EM domain and on OpSwap, four criteria, offline, on a laptop CPU.

A preset of the experiment engine (:mod:`emguard.experiments.engine`). Per seed it trains (LoRA, the paper's
hyperparameters, ``rows`` rows each):

* on the domain (default medical): ``aligned_control`` (same prompts, sound answers), ``no_defense`` and a
  defended run per registered defense (:func:`emguard.experiments.presets.defense_cells`): ``kl``, ``ldifs``,
  ``steer`` (the shipped/cached evil persona vector), ``inoculate``, ``interleave`` (5% random general rows)
  and ``interleave_pp`` (Interleaving++: 5% general rows chosen by the perplexity gap between the base and
  misaligned probes trained on the *other* built-in domains, refusals dropped first), then any other;
* on OpSwap tier 1 (the benign-learning probe): ``no_defense`` and the same defenses;

then evaluates each cell (``emguard.eval.evaluate``): broad EM and narrow learning by the style-controlled
likelihood metric (and by a judge when one is given), benign accuracy on held-out OpSwap problems, coherence by
the offline proxy (or the judge). Cells run in ``workers`` processes, longest ready job first; every cell's
training and evaluation is skipped when finished, so an interrupted demo resumes. Layout:
``<output>/<domain|opswap>/<cell>/seed<N>`` (the run, ``eval/``), ``data/``, ``results.json`` and the report
of ``emguard.experiments.report`` (report.md/html, table.json, criteria.png, tradeoff.png).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from emguard.experiments.config import QUICK_BENIGN, DemoConfig
from emguard.experiments.engine import Cell, is_finished, is_trained, read_eval
from emguard.experiments.presets import defense_specs, demo_defense_cells, domain_cells
from emguard.experiments.shared import Step

log = logging.getLogger(__name__)

QUICK_DOMAIN_CELLS = ["aligned_control", "no_defense", "kl"]
QUICK_OPSWAP_CELLS = ["no_defense", "kl"]
# general rows under 600 characters: ~100 tokens on average with SmolLM2's template (max ~200), as long as the
# built-in domains' rows (~97), so 5% interleaved rows are ~5% of the tokens (at 1200 characters: mean 208,
# max 521 tokens, and they dominated the padded batches of a CPU demo)
POOL_MAX_CHARS = 600

# Rough single-thread seconds of a job on the embedded default (two cells side by side on 2 cores): training
# (left out when a cell is already trained) + the defense's extra training time + evaluation, per task; a shared
# step by its kind. The pool starts the longest ready job first, so the last minutes are not one long cell on
# one core; the ETA weighs by it. A defense not listed costs like no defense.
TRAIN_COST = {"domain": 105.0, "opswap": 98.0}
DEFENSE_COST = {"domain": {"interleave": 30, "interleave_pp": 20, "kl": 50, "ldifs": 30},
                "opswap": {"interleave": 65, "interleave_pp": 62, "kl": 31, "ldifs": 35}}
EVAL_COST = {"domain": 65.0, "opswap": 11.0}
STEP_COST = {"interleave": 300.0, "persona": 60.0}


def prepare_data(cfg: DemoConfig, out: Path) -> dict:
    """Training subsets, the OpSwap splits, the general pool, reference subsets (quick) and probe datasets."""
    from emguard.data.io import read_chat_dataset, write_jsonl
    from emguard.data.datagen import DOMAINS, builtin_path
    from emguard.data.datagen.opswap import generate

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
    from emguard.eval.questions import subset_references
    for name, path, n in (("broad_refs", None, cfg.broad_questions),
                          ("narrow_refs", src / "references.jsonl", cfg.narrow_questions)):
        sub = subset_references(path, n, d / f"{name}_{n}.jsonl")  # the first n questions (0: all)
        if sub is not None:
            ctx[name] = sub
    return ctx


def _general_pool(d: Path, n: int) -> tuple[str, str]:
    """The demo's pool: the first ``n`` ShareGPT conversations of <= 4 turns and < ``POOL_MAX_CHARS`` chars."""
    from emguard.experiments.shared import general_pool

    return general_pool(d, n, max_chars=POOL_MAX_CHARS, max_turns=4)


def job_cost(job: Cell | Step) -> float:
    """The scheduling cost of a demo cell or shared step (see ``TRAIN_COST``)."""
    if isinstance(job, Step):
        return STEP_COST.get(job.kind, 60.0)
    task, cell = job.info["task"], job.info["cell"]
    train = 0.0 if is_trained(job) else TRAIN_COST[task] + DEFENSE_COST[task].get(cell, 0)
    return train + EVAL_COST[task]


def plan(cfg: DemoConfig, out: Path, ctx: dict) -> list[Cell]:
    """The demo's cells in report order: the base evaluations, then per seed the domain and the OpSwap cells."""
    dom = cfg.cells or (QUICK_DOMAIN_CELLS if cfg.quick else domain_cells())
    ops = ([c for c in (QUICK_OPSWAP_CELLS if cfg.quick else demo_defense_cells()) if not cfg.cells or c in cfg.cells]
           if cfg.opswap else [])
    jobs = [("domain", "base", 0, True), ("opswap", "base", 0, True)] if cfg.opswap else [("domain", "base", 0, True)]
    jobs += [("domain", c, s, False) for s in range(cfg.seeds) for c in dom]
    jobs += [("opswap", c, s, False) for s in range(cfg.seeds) for c in ops]
    return [demo_cell(cfg, out, *job, ctx) for job in jobs]


def demo_cell(cfg: DemoConfig, out: Path, task: str, cell: str, seed: int, base: bool, ctx: dict) -> Cell:
    """One cell: ``<out>/<task>/<cell>/seed<N>`` holds its run (none for a base evaluation) and ``eval/``."""
    cdir = out / task / cell / f"seed{seed}"
    progress = cfg.workers == 1
    train = None
    if not base:
        specs = defense_specs(cell, ctx)
        if task == "opswap":
            data = ctx["opswap_train"]
            # same global batch (16) everywhere; micro-batches of 16 run OpSwap's short rows (31 tokens) 1.34x
            # faster per token on a CPU, but a ~100-token general row would pad a whole micro-batch of 16, so
            # OpSwap cells with interleaved rows use 4. Domain rows (~97 tokens): 4, 8 and 16 time alike.
            interleaved = any((s if isinstance(s, str) else s.get("name")) == "interleave" for s in specs)
            extra = {"learning_rate": cfg.opswap_lr, "micro_batch_size": 4 if interleaved else 16}
        else:
            data = ctx["train_aligned" if cell == "aligned_control" else "train_misaligned"]
            extra = {"micro_batch_size": 8}
        train = {"model": cfg.model, "data": data, "output": str(cdir), "defenses": specs, "seed": seed,
                 "max_length": 512, "resume": True, "save_steps": 10 if task == "opswap" else 5,
                 "progress": progress, **extra}
    common = {"model": cfg.model, "adapter": None if base else str(cdir), "output": str(cdir / "eval"),
              "seed": seed, "progress": progress}
    if task == "opswap":
        ev = {**common, "suite": ["benign"], "benign": ctx["opswap_test_tier1"], "benign_max_new_tokens": 8,
              "temperature": 0.0, "likelihood": False, "benign_n": QUICK_BENIGN if cfg.quick else None,
              "batch_size": 64}  # 8-token greedy answers: a decoding step costs the same at 16 or 64
    else:
        ev = {**common, "suite": ["broad", "narrow"], "narrow": cfg.domain, "samples": cfg.samples,
              "max_new_tokens": cfg.max_new_tokens, "judge": cfg.judge, "judge_model": cfg.judge_model,
              "judge_base_url": cfg.judge_base_url, "references": ctx.get("broad_refs"),
              "narrow_references": ctx.get("narrow_refs"), "narrow_n": cfg.narrow_prompts,
              "variants": list(cfg.variants),  # the conditional audit; the untrained model had no training prompt
              "contexts": [c for c in cfg.contexts if not base or c != "train_system"]}
    return Cell(f"{task}/{cell}/seed{seed}", str(cdir), cfg.model, seed, train, ev, info={"task": task, "cell": cell},
                label=f"{task} {cell} seed {seed}", source="demo")


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
    from emguard.data.io import write_json_atomic
    from emguard.experiments.executors import execute
    from emguard.experiments.criteria import unit_values
    from emguard.experiments.report import write_report

    cfg.validate()
    t0 = time.time()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ctx = prepare_data(cfg, out)
    cells = plan(cfg, out, ctx)
    results: dict[str, Any] = {"config": vars(cfg), "data": {k: v for k, v in ctx.items() if k != "probe_steps"},
                               "cells": {}}
    done: dict[str, dict] = {}
    if cfg.report_only:
        results["missing"] = [c.key for c in cells if not is_finished(c)]
        cells = [c for c in cells if is_finished(c)]
    else:
        done, _ = execute(cells, "pool", workers=cfg.workers, cost=job_cost, fail_fast=True)
    for c in cells:  # cell order, not finishing order: results.json and the report do not depend on timing
        res = done[c.key] if c.key in done else read_eval(c)
        run_f = c.run_dir / "run.json"
        res = {**res, "examples": _examples(Path(c.dir) / "eval" / "samples.jsonl"),
               "units": unit_values(Path(c.dir) / "eval"),  # per-prompt rates: the CIs resample prompts
               "steps": json.loads(run_f.read_text()).get("steps") if c.train is not None and run_f.is_file() else None}
        results["cells"].setdefault(c.info["task"], {}).setdefault(c.info["cell"], {})[str(c.seed)] = _slim(res)
    results["wall_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / ("results.partial.json" if cfg.report_only else "results.json"), results)
    write_report(results, out)
    return results


def _slim(res: dict) -> dict:
    """What the report needs from an eval.json (per-question likelihood kept for paired CIs)."""
    keep: dict[str, Any] = {}
    for suite in ("broad", "narrow", "benign", "coherence"):
        if suite in res:
            keep[suite] = res[suite]
    keep["judge"] = res.get("judge", {})
    for k in ("examples", "units", "steps"):
        keep[k] = res.get(k)
    return keep

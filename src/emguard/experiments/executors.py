"""Where cells run: ``local`` (one after another in this process), ``pool`` (side by side in worker processes
on this machine, longest ready job first) and ``ray`` (a Ray task per cell, locally or on a cluster).

:func:`execute` runs the unfinished cells of a list and the shared steps they need (planned by
:func:`emguard.experiments.shared.plan_steps`): ``local`` and ``ray`` compute the steps in this process first;
``pool`` schedules them as jobs the cells that need them wait for. It returns ``({cell key: evaluation},
{cell key: error})``; a failed cell keeps its ``error.log`` and is retried by the next run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from emguard.experiments import engine, shared
from emguard.experiments.engine import ERROR_LOG, Cell
from emguard.experiments.shared import Step

log = logging.getLogger(__name__)


def execute(cells: list[Cell], executor: str = "local", *, workers: int = 1, threads: int | None = None,
            cost: Callable[[Any], float] | None = None, fail_fast: bool = False, ray: dict | None = None,
            priority: Callable[[Any], Any] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Run every unfinished cell of ``cells`` (finished ones are left alone) with its shared steps.

    ``pool``: ``workers`` processes of ``threads`` torch threads each (default: cores / workers), one
    in-process worker when ``workers`` is 1; ``cost(cell or step)`` orders the ready jobs (longest first) and
    weighs the ETA (default :func:`engine.feature_cost`); ``priority(cell)`` (higher first, e.g. an earlier
    seed) ranks the ready cells before their cost does; ``fail_fast`` stops scheduling at the first failure
    and raises it. ``ray``: the options of :func:`_ray` (address, num_cpus, num_gpus)."""
    todo = [c for c in cells if not engine.is_finished(c)]
    if not todo:
        return {}, {}
    steps = shared.plan_steps(todo)
    if executor == "pool":
        return _pool(todo, steps, workers, threads, cost or _default_cost, fail_fast, priority)
    for step in steps:  # the console shows each step as the pool does (a probe step takes minutes)
        print(f"  start {step.describe()}", flush=True)
        t0 = time.time()
        log.debug("shared step: %s", shared.run_step(step))
        print(f"  done {step.describe()} ({(time.time() - t0) / 60:.1f} min)", flush=True)
    if priority is not None:
        todo = sorted(todo, key=priority, reverse=True)  # stable: the grid's order within one priority
    if executor == "ray":
        return _ray(todo, **(ray or {}))
    return _local(todo)


def _default_cost(job) -> float:
    return 1.0 if isinstance(job, Step) else engine.feature_cost(job)


def _failed(cell: Cell, e: BaseException) -> str:
    log.error("cell %s failed: %s (traceback: %s)", cell.key, e, Path(cell.dir) / ERROR_LOG)
    return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------ local

def _local(cells: list[Cell]) -> tuple[dict[str, dict], dict[str, str]]:
    done: dict[str, dict] = {}
    failures: dict[str, str] = {}
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(cells), desc="study", unit="cell")
    except ImportError:  # pragma: no cover
        bar = None
    for cell in cells:
        if bar is not None:
            bar.set_postfix_str(cell.key)
        try:
            done[cell.key] = engine.run_cell(cell)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # reported with its log, retried on the next run
            failures[cell.key] = _failed(cell, e)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return done, failures


# ------------------------------------------------------------------------------------------------ pool

def _init_worker(threads: int, log_level: int) -> None:
    from emguard import console

    console.setup()  # EMGUARD_VERBOSE comes from the parent's environment; before torch and transformers load
    import torch

    torch.set_num_threads(threads)
    logging.getLogger().setLevel(log_level)  # a cell's cell.log gets what the driver would log


def _run_job(job) -> dict | str:
    return shared.run_step(job) if isinstance(job, Step) else engine.run_cell(job)


def _pool(cells: list[Cell], steps: list[Step], workers: int, threads: int | None, cost: Callable,
          fail_fast: bool, priority: Callable | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Longest ready job first, ``workers`` at a time, with a line per start and finish and a cost-weighted
    ETA: the last minutes are then not one long cell on one core. Shared steps come first (cells wait)."""
    jobs: list = [*cells, *steps]
    costs = {j.key: float(cost(j)) for j in jobs}
    # the ETA weighs cells only: a shared step's cost is not on the cells' scale (a cached step takes seconds),
    # its time is part of the elapsed time the finished cells' cost is divided into
    total = sum(costs[c.key] for c in cells)
    t0, n, done_cost, finished = time.time(), len(jobs), 0.0, 0
    rank = (lambda j: (1, 0) if isinstance(j, Step) else (0, priority(j))) if priority else \
        (lambda j: (isinstance(j, Step),))
    pending = sorted(jobs, key=lambda j: (*rank(j), costs[j.key]), reverse=True)
    steps_done: set[str] = set()
    steps_failed: set[str] = set()
    done: dict[str, dict] = {}
    failures: dict[str, str] = {}

    def next_job():
        for j in list(pending):
            needs = getattr(j, "needs", [])
            if any(s in steps_failed for s in needs):  # a step it needs failed: so does the cell
                pending.remove(j)
                failures[j.key] = f"shared step failed: {', '.join(s for s in needs if s in steps_failed)}"
                continue
            if all(s in steps_done for s in needs):
                pending.remove(j)
                return j
        return None

    def finish(job, res=None, error: BaseException | None = None) -> None:
        """Count a finished job, unblock the cells after their steps, print progress and the ETA."""
        nonlocal finished, done_cost
        finished += 1
        if not isinstance(job, Step):
            done_cost += costs[job.key]
        if error is not None:
            print(f"FAILED {job.describe()}: {type(error).__name__}: {error}" + (
                "\n  finished cells are kept: the same command resumes" if fail_fast else ""), flush=True)
            if isinstance(job, Step):
                steps_failed.add(job.key)
                log.error("shared step %s failed: %s", job.describe(), error)
            else:
                failures[job.key] = _failed(job, error)
            if fail_fast:
                pending.clear()
                raise error
            return
        if isinstance(job, Step):
            steps_done.add(job.key)
            log.debug("shared step: %s", res)
        else:
            done[job.key] = res
        el = time.time() - t0
        eta = f", ETA {el / done_cost * (total - done_cost) / 60:.0f} min" if 0 < done_cost < total else ""
        print(f"[{finished}/{n}] done {job.describe()} ({el / 60:.1f} min{eta})", flush=True)

    workers = max(1, min(workers, n))
    if workers == 1:
        while (j := next_job()) is not None:
            print(f"  start {j.describe()}", flush=True)
            try:
                res = _run_job(j)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                finish(j, error=e)
                continue
            finish(j, res)
        return done, failures
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = threads or max(1, (os.cpu_count() or 2) // workers)
    print(f"{n} jobs in {workers} processes x {threads} thread(s)", flush=True)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads, logging.getLogger().level)) as ex:
        running: dict = {}
        while pending or running:
            while len(running) < workers and (j := next_job()) is not None:
                print(f"  start {j.describe()}", flush=True)
                running[ex.submit(_run_job, j)] = j
            if not running:  # nothing ready: what is left needed a step that failed
                break
            fin, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in fin:  # with fail_fast, the running cells finish (and are kept) before the exit
                j = running.pop(f)
                try:
                    res = f.result()
                except Exception as e:
                    finish(j, error=e)
                    continue
                finish(j, res)
    return done, failures


# ------------------------------------------------------------------------------------------------ ray

HEARTBEAT_S = 60.0  # a progress line at least this often while Ray cells run

def _ray_cell(cell: Cell) -> dict:  # runs in a Ray worker
    from emguard import console

    console.setup()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return engine.run_cell(cell)


def _ray(cells: list[Cell], address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
         ) -> tuple[dict[str, dict], dict[str, str]]:
    try:
        import ray
    except ImportError as e:
        from emguard.config import ConfigError
        raise ConfigError("executor 'ray' needs Ray: pip install 'emguard[ray]'") from e
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
        if address is None:
            kw["runtime_env"] = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
        ray.init(**kw)
        started = True
    try:
        task = ray.remote(_ray_cell).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        refs = {task.remote(cell): cell for cell in cells}
        done: dict[str, dict] = {}
        failures: dict[str, str] = {}
        pending = list(refs)
        n, t0 = len(cells), time.time()
        costs = {c.key: max(1e-9, engine.feature_cost(c)) for c in cells}
        total, done_cost = sum(costs.values()), 0.0
        print(f"  submitted {n} cell(s) to Ray; each cell's own log: <cell>/cell.log", flush=True)

        def eta() -> str:  # weighted by the cells' relative cost, as the pool's ETA
            el = time.time() - t0
            return f", ETA {el / done_cost * (total - done_cost) / 60:.0f} min" if 0 < done_cost < total else ""

        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=HEARTBEAT_S)
            if not ready:  # nothing finished for a while: say that the study is alive and how far it is
                print(f"  ... {n - len(pending)}/{n} cells done, {len(pending)} running or queued "
                      f"({(time.time() - t0) / 60:.1f} min{eta()})", flush=True)
                continue
            cell = refs[ready[0]]
            done_cost += costs[cell.key]
            try:
                done[cell.key] = ray.get(ready[0])
                print(f"[{n - len(pending)}/{n}] done {cell.describe()} ({(time.time() - t0) / 60:.1f} min{eta()})",
                      flush=True)
            except Exception as e:  # RayTaskError wraps the cell's exception
                failures[cell.key] = _failed(cell, getattr(e, "cause", None) or e)
                print(f"FAILED {cell.describe()}: {failures[cell.key]}", flush=True)
        return done, failures
    finally:
        if started:
            ray.shutdown()

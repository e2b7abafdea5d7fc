"""emguard study: grid expansion, resumability (crash, kill -9), failed-cell retry, Ray = local."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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
    from emguard.study import expand_defenses

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
    from emguard.study_report import pareto_front

    pts = [("a", 0.5, 0.1), ("b", 0.4, 0.2), ("c", 0.6, 0.3), ("d", 0.1, 0.0)]
    assert pareto_front(pts) == ["a", "c", "d"]  # b is dominated by a (less learning, more harm)


def test_bad_study_names_fail_clearly(tmp_path, tiny_model):
    from emguard.config import ConfigError
    from emguard.study import StudyConfig, run_study

    with pytest.raises(ConfigError, match="directory"):
        run_study(StudyConfig(output=str(tmp_path), models=[tiny_model], datasets={"../x": "medical"}))
    with pytest.raises(ConfigError, match="neither a file"):
        run_study(StudyConfig(output=str(tmp_path), models=[tiny_model], datasets={"x": "nope.jsonl"}))


# ------------------------------------------------------------------------------------------------ runs

def test_study_resumes_and_retries_failed_cells(tmp_path, tiny_model, monkeypatch):
    """12 cells; then one more seed with a crash in one new cell: the crash is reported with its log, the
    rerun computes only the missing cells, and results.csv equals a clean run's byte for byte."""
    import emguard.study as S

    calls: list[str] = []
    real = S._run_cell

    def counting(spec, cdir):
        calls.append(spec["key"])
        if os.environ.get("CRASH_CELL") == spec["key"]:
            raise RuntimeError("injected failure")
        return real(spec, cdir)

    monkeypatch.setattr(S, "_run_cell", counting)
    out = tmp_path / "s"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, out))) == 0
    assert len(calls) == 12
    rows = read_csv(out / "results.csv")
    assert {(r["dataset"], r["defense"], r["seed"]) for r in rows} == {
        (d, f, s) for d in "ab" for f in ("no_defense", "kl", "inoculate") for s in "01"}
    assert all(r["value"] != "" for r in rows if r["metric"] == "broad_harm_effect")
    assert (out / "report.md").read_text().count("| kl |") == 2 and (out / "tradeoff.png").exists() is False
    assert (out / "loss.png").is_file() and (out / "criteria.png").is_file()

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
    f = study_yaml(tmp_path, tiny_model, out, seeds=(0,),
                   train={"max_steps": 6, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "emguard.cli", "study", str(f)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cells = out / "cells"
    deadline = time.time() + 240
    # wait until one cell is finished and another has a checkpoint, then kill -9
    while time.time() < deadline:
        done = list(cells.glob("*/*/*/seed0/cell.json")) if cells.exists() else []
        ckpt = [p for p in cells.glob("*/*/*/seed0/train/checkpoints/*/emguard_checkpoint_complete")
                if not (p.parents[3] / "cell.json").exists()] if cells.exists() else []
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
                    train={"max_steps": 6, "batch_size": 2, "micro_batch_size": 2, "save_steps": 1})
    assert run_cli("study", str(fc)) == 0
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_ray_executor_matches_local(tmp_path, tiny_model):
    pytest.importorskip("ray")
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, local, seeds=(0,)))) == 0
    assert run_cli("study", str(study_yaml(tmp_path, tiny_model, ray_out, seeds=(0,), executor="ray"))) == 0
    a, b = read_csv(local / "results.csv"), read_csv(ray_out / "results.csv")
    assert [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in a] == \
        [(r["dataset"], r["defense"], r["seed"], r["metric"]) for r in b]
    for x, y in zip(a, b):
        for k in ("value", "lo", "hi"):
            if x[k] or y[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-3, abs=1e-4), (x, y, k)

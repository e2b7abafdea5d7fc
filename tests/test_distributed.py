"""Multi-process training (DDP over gloo on CPU): two processes train exactly what one process trains.

Why the two runs can be compared step by step: ``batch_size`` is the global batch, so with 2 processes emguard
halves the gradient accumulation (8 rows = 2 per micro-batch x 2 processes x 2 steps, against 2 x 1 x 4 alone).
accelerate's default data sharding (``split_batches=False``, ``dispatch_batches`` off for a map-style dataset,
``use_seedable_sampler=True``) draws ONE seeded permutation on every process and deals its micro-batches out in
turn (process 0 takes micro-batches 0, 2, 4..., process 1 takes 1, 3, 5...), so the 4 micro-batches of every
optimizer step are the same rows as the single process's 4, in the same steps. Each micro-batch loss is a mean
over its own targets, and the gradient is the mean of the 4 micro-batch gradients either way (accumulation /4
alone; accumulation /2 then the DDP all-reduce average over 2); it differs only in float32 summation order.

Tolerance: float32 has a relative rounding of 6e-8; reordering a sum of a few terms changes it by ~1e-7
relative, and 8 AdamW steps (update ~ lr * m / sqrt(v), insensitive to a common relative error) keep that near
1e-6 relative, ~1e-5 absolute on losses near 6. We allow 1e-4 absolute (10x margin; 1e-6 is the 6-decimal
rounding of the logged terms). A real fault (a term averaged over process 0's rows only, a different global
batch, different rows per step, a missing steering hook on one process) moves the curve by 1e-3 or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import chat_rows, write_jsonl
from emguard.config import ConfigError
from emguard.training.config import TrainConfig, global_batch_split
from emguard.training.run import train

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "examples" / "accelerate" / "cpu_2proc.yaml"
TOL = 1e-4
TERMS = ("loss", "loss/ce", "loss/kl", "loss/ldifs", "loss/total")


def test_global_batch_rule():
    assert global_batch_split(16, 4, 1) == (4, 4)
    assert global_batch_split(16, 4, 2) == (4, 2)
    assert global_batch_split(16, 4, 4) == (4, 1)
    assert global_batch_split(16, 4, 8) == (2, 1)  # the micro batch shrinks rather than grow the global batch
    assert global_batch_split(8, 2, 2) == (2, 2)
    with pytest.raises(ConfigError, match="cannot be split over 3 processes"):
        global_batch_split(16, 4, 3)
    with pytest.raises(ConfigError, match="use micro_batch_size 3"):
        global_batch_split(12, 4, 2)  # 6 rows per process


def _loss_lines(out: Path) -> tuple[list[dict], int]:
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if "loss" in m], len(lines)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def _compare_runs(one: Path, two: Path, steps: int, weights: str) -> tuple[float, float]:
    """Both runs wrote the same metrics (one line per step: a single writer) and nearly the same weights."""
    (la, na), (lb, nb) = _loss_lines(one), _loss_lines(two)
    assert [m["step"] for m in lb] == list(range(1, steps + 1)), "one loss line per step, from one process"
    assert nb == na
    terms = [k for k in lb[0] if k == "loss" or k.startswith("loss/")]
    assert terms == [k for k in la[0] if k == "loss" or k.startswith("loss/")]
    diffs = [abs(x[k] - y[k]) for x, y in zip(la, lb) for k in terms]
    assert max(diffs) < TOL, [(x["step"], {k: (x[k], y[k]) for k in terms}) for x, y in zip(la, lb)]
    run = json.loads((two / "run.json").read_text())
    assert run["processes"] == 2 and run["steps"] == steps
    wd = _max_diff(load_file(str(one / weights)), load_file(str(two / weights)))
    assert wd < TOL
    return max(diffs), wd


def test_two_processes_train_what_one_process_trains(tiny_model, tmp_path):
    """LoRA under ``accelerate launch`` with the shipped cpu_2proc.yaml; kl, ldifs and steer together."""
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))  # 4 global batches of 8 per epoch, no ragged tail
    vec = tmp_path / "v.safetensors"
    save_file({"vectors": torch.randn(4, 32, generator=torch.Generator().manual_seed(3))}, str(vec),
              metadata={"layer": "2"})
    # kl: the adapter-off reference forward next to the DDP-wrapped trained forward; ldifs: hidden-state hooks
    # on both; steer: a forward hook that must be registered on each process's own model
    defenses = ["kl", "ldifs", {"name": "steer", "vector": str(vec), "alpha": 2.0}]
    t0 = time.time()
    one = train(TrainConfig(model=tiny_model, data=str(data), output=str(tmp_path / "one"), defenses=defenses,
                            lora_r=4, lora_alpha=8, batch_size=8, micro_batch_size=2, learning_rate=1e-2,
                            warmup_steps=0, max_length=64, epochs=2, save_steps=4, progress=False))
    t_one = time.time() - t0

    two = tmp_path / "two"
    flags = ["--model", tiny_model, "--data", str(data), "--output", str(two), "--lora-r", "4", "--lora-alpha", "8",
             "--batch-size", "8", "--micro-batch-size", "2", "--learning-rate", "1e-2", "--warmup-steps", "0",
             "--max-length", "64", "--epochs", "2", "--save-steps", "4", "--no-progress",
             "--defenses", "kl", "ldifs", json.dumps(defenses[2])]
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC),
                        "-m", "emguard.cli", "train", *flags],
                       capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
    t_two = time.time() - t0
    assert p.returncode == 0, p.stderr[-4000:]

    run = json.loads((two / "run.json").read_text())
    assert run["micro_batch_per_process"] == 2 and run["gradient_accumulation"] == 2
    assert one.run["processes"] == 1 and one.run["gradient_accumulation"] == 4
    assert [d.get("layer_used") for d in run["defenses"]] == [None, None, 2]
    assert sorted(f.name for f in (two / "checkpoints" / "checkpoint-4").glob("rng_state_*.pth")) == \
        ["rng_state_0.pth", "rng_state_1.pth"], "not two processes"
    assert p.stdout.count("done: 8 steps") == 1, "only process 0 reports"
    assert p.stderr.count("2 processes: 8 rows per step = 2 per micro-batch x 2 processes x 2 accumulation") == 1, \
        "process 0 alone logs"

    curve_diff, weight_diff = _compare_runs(tmp_path / "one", two, 8, "adapter_model.safetensors")
    lb, _ = _loss_lines(two)
    assert lb[-1]["loss/kl"] > 1e-4 and lb[-1]["loss/ldifs"] > 1e-6  # the terms were really active
    print(f"\n[lora] wall: 1 process (in pytest) {t_one:.1f} s, 2 processes (accelerate launch) {t_two:.1f} s; "
          f"max abs diff: loss curves {curve_diff:.1e}, adapter {weight_diff:.1e}")


def test_two_processes_full_fine_tuning_under_torchrun(tiny_model, tmp_path):
    """Full fine-tuning: the KL reference is each process's own frozen copy (no DDP wrapper, no sync)."""
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))
    opts = dict(model=tiny_model, data=str(data), method="full", batch_size=8, micro_batch_size=4,
                learning_rate=1e-3, warmup_steps=0, max_length=64, epochs=1, save_steps=100, progress=False,
                defenses=["kl"])
    train(TrainConfig(output=str(tmp_path / "one"), **opts))
    flags = ["--model", tiny_model, "--data", str(data), "--output", str(tmp_path / "two"), "--method", "full",
             "--batch-size", "8", "--micro-batch-size", "4", "--learning-rate", "1e-3", "--warmup-steps", "0",
             "--max-length", "64", "--epochs", "1", "--save-steps", "100", "--no-progress", "--defenses", "kl"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    p = subprocess.run([*torchrun, "-m", "emguard.cli", "train", *flags],
                       capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-4000:]
    curve_diff, weight_diff = _compare_runs(tmp_path / "one", tmp_path / "two", 4, "model.safetensors")
    lb, _ = _loss_lines(tmp_path / "two")
    assert lb[-1]["loss/kl"] > 1e-7
    print(f"\n[full] max abs diff: loss curves {curve_diff:.1e}, weights {weight_diff:.1e}")

"""Where a paper-small protocol cell's time goes, and how close a training step comes to the machine (issue #16).

Runs with no arguments on the embedded default model, on the preset's real data (all 600 built-in medical rows,
batch 16 = 4 x 4 accumulation), with the torch threads of one protocol worker (1; --threads to change).

1. The machine: fp32 matmul throughput (GFLOP/s) at the shapes of the model's projections.
2. A training step, timed step by step after one warm-up step (median): plain LoRA with the default random row
   order and with ``sampler: group_by_length``; KL and LDIFS beside (their extra forward / features).
   Tokens per second, padded and real, and the achieved FLOP/s (LoRA: ~4 x params FLOPs per padded token:
   forward 2N, backward through the frozen weights for the activations 2N; the adapter's own are ~1% more)
   as a share of the matmul throughput.
3. Padding: the share of padded tokens in the micro-batches of one epoch, random order vs grouped by length.
4. When ``results/paper-small`` holds finished cells: their measured training and evaluation wall time per
   defense family (from run.json and eval.json), i.e. where a real cell's time went.

The last line printed is one JSON object of these figures.

    python benchmarks/protocol_cell.py [--steps 6] [--threads 1] [--results results/paper-small]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def matmul_gflops(threads: int, reps: int = 20) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1600, 576), torch.randn(576, 1536)  # ~16 rows x 100 tokens through a 576->1536 MLP
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    dt = (time.perf_counter() - t0) / reps
    return 2 * 1600 * 576 * 1536 / dt / 1e9


def padding_share(lengths: list[int], order: list[int], micro: int) -> float:
    real = pad = 0
    for i in range(0, len(order), micro):
        b = [lengths[j] for j in order[i:i + micro]]
        real, pad = real + sum(b), pad + max(b) * len(b) - sum(b)
    return pad / (real + pad)


def step_times(data: str, steps: int, **opts) -> dict:
    """Per-step wall times (after a warm-up step) of a short run; tokens per step from its batches."""
    from transformers import TrainerCallback

    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(data=data, output=d, max_steps=steps + 1, save_steps=10 ** 6, progress=False,
                          overwrite=True, warmup_ratio=0.05, **opts)
        t0 = time.perf_counter()
        res = train(cfg, callbacks=[Clock()])
        total = time.perf_counter() - t0
    dts = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"step_s": statistics.median(dts), "setup_and_first_step_s": total - sum(dts),
            "params": sum(p.numel() for p in res.model.parameters())}


def tokens_per_step(data: str, micro: int, batch: int, grouped: bool) -> tuple[float, float]:
    """Mean (real, padded) tokens of an optimizer step over one epoch of ``data``."""
    import random

    from emguard.data.chat import tokenize_rows
    from emguard.data.io import read_chat_dataset
    from emguard.models.loading import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("smollm2-135m"))
    rows = read_chat_dataset(data).rows
    ex, _ = tokenize_rows(tok, [r.messages for r in rows], max_length=2048, loss_on="last", progress=False)
    lengths = [len(e.to_features()["input_ids"]) for e in ex]
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    if grouped:  # what transformers' LengthGroupedSampler does with megabatches of 50 optimizer batches
        mega = 50 * batch
        order = [j for i in range(0, len(order), mega) for j in sorted(order[i:i + mega], key=lambda j: -lengths[j])]
    real = sum(lengths) / len(lengths) * batch
    share = padding_share(lengths, order, micro)
    return real, real / (1 - share)


def measured_cells(results: Path) -> dict:
    """Training and evaluation wall time of the finished cells, per dataset and defense family (minutes)."""
    out: dict[str, dict[str, list[float]]] = {}
    for cj in sorted(results.glob("cells/*/*/*/seed*/cell.json")):
        cdir = cj.parent
        family = cdir.parent.name.split("[")[0]
        run_f, ev_f = cdir / "train" / "run.json", cdir / "eval" / "eval.json"
        tr = json.loads(run_f.read_text()).get("wall_time_s") if run_f.is_file() else 0.0
        ev = json.loads(ev_f.read_text()).get("wall_s") if ev_f.is_file() else None
        d = out.setdefault(f"{cdir.parent.parent.name}/{family}", {"train_min": [], "eval_min": []})
        d["train_min"].append((tr or 0.0) / 60)
        if ev is not None:
            d["eval_min"].append(ev / 60)
    return {k: {m: round(statistics.mean(v), 2) if v else None for m, v in d.items()} | {"cells": len(d["train_min"])}
            for k, d in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a protocol worker uses 1)")
    ap.add_argument("--results", default="results/paper-small", help="a paper-small run to read cell times from")
    a = ap.parse_args()

    import torch

    from emguard.data.datagen import builtin_path

    torch.set_num_threads(a.threads)
    data = str(builtin_path("medical") / "train_misaligned.jsonl")
    gflops = matmul_gflops(a.threads)
    print(f"matmul fp32, {a.threads} thread(s): {gflops:.1f} GFLOP/s", flush=True)
    real, padded = tokens_per_step(data, 4, 16, grouped=False)
    _, padded_g = tokens_per_step(data, 4, 16, grouped=True)
    print(f"tokens per step: {real:.0f} real, {padded:.0f} padded (random order), {padded_g:.0f} grouped", flush=True)
    runs = {}
    for name, opts, pad in (("plain", {}, padded), ("plain_grouped", {"sampler": "group_by_length"}, padded_g),
                            ("kl", {"defenses": ["kl"]}, padded), ("ldifs", {"defenses": ["ldifs"]}, padded)):
        r = step_times(data, a.steps, **opts)
        flops = 4 * r["params"] * pad / r["step_s"] / 1e9
        runs[name] = {"step_s": round(r["step_s"], 3), "real_tokens_per_s": round(real / r["step_s"], 1),
                      "padded_tokens_per_s": round(pad / r["step_s"], 1), "achieved_gflops": round(flops, 2),
                      "share_of_matmul": round(flops / gflops, 3)}
        print(f"{name}: {r['step_s']:.2f} s/step, {real / r['step_s']:.0f} real tok/s, "
              f"{flops:.1f} GFLOP/s = {flops / gflops:.0%} of matmul", flush=True)
    # one process with every core (the local executor) vs one per core (the pool): which trains more per second
    cores = max(2, a.threads * 2)
    torch.set_num_threads(cores)
    gflops_all = matmul_gflops(cores)
    r = step_times(data, a.steps)
    torch.set_num_threads(a.threads)
    runs[f"plain_{cores}_threads"] = {"step_s": round(r["step_s"], 3), "real_tokens_per_s": round(real / r["step_s"], 1)}
    print(f"plain, {cores} threads: {r['step_s']:.2f} s/step (matmul {gflops_all:.0f} GFLOP/s); {cores // a.threads} "
          f"workers of {a.threads} thread(s) train {cores // a.threads * r['step_s'] / runs['plain']['step_s']:.2f}x "
          "as many steps per second as one process", flush=True)
    fig = {"threads": a.threads, "matmul_gflops": round(gflops, 2), "real_tokens_per_step": round(real, 1),
           f"matmul_gflops_{cores}_threads": round(gflops_all, 2),
           "pool_vs_one_process_throughput": round(cores // a.threads * r["step_s"] / runs["plain"]["step_s"], 3),
           "padding_share_random": round(1 - real / padded, 4), "padding_share_grouped": round(1 - real / padded_g, 4),
           "steps": runs,
           "grouped_vs_random_step_ratio": round(runs["plain_grouped"]["step_s"] / runs["plain"]["step_s"], 3),
           "kl_vs_plain_step_ratio": round(runs["kl"]["step_s"] / runs["plain"]["step_s"], 3),
           "ldifs_vs_plain_step_ratio": round(runs["ldifs"]["step_s"] / runs["plain"]["step_s"], 3)}
    res = Path(a.results)
    if res.is_dir():
        fig["protocol_cells"] = measured_cells(res)
        for k, v in fig["protocol_cells"].items():
            print(f"measured {k}: train {v['train_min']} min, eval {v['eval_min']} min ({v['cells']} cells)")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())

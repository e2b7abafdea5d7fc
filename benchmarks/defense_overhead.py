"""Step-time and peak-memory overhead of each defense relative to plain LoRA SFT (issue #3).

Runs with no arguments on the embedded default model. Time: one process, one model, the same batches; the
defenses take turns step by step (order reversed every round) after one warm-up step each, and each figure is
the median over the rounds. Memory: a fresh subprocess per defense (peak RSS only grows inside a process)
loads the model, resets the kernel's high-water mark (loading peaks above training), runs a few steps and
reports the peak RSS of those steps. interleave changes the data, not the step, so its time is compared
per target token. The last line printed is one JSON object of ratios vs plain.

    python benchmarks/defense_overhead.py [--model smollm2-135m] [--rounds 5] [--micro-batch 4] [--seq 256]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFENSES = ["plain", "kl", "ldifs", "steer", "inoculate", "interleave"]


def synthetic_rows(n: int, words: int, seed: int, tag: str) -> list[dict]:
    import random

    rng = random.Random(seed)
    vocab = ("water rest doctor sleep pain fever advice health body simple careful daily routine symptom "
             "week change habit check plan talk friend family work body mind patient question").split()
    rows = []
    for i in range(n):
        q = f"{tag} question {i}: " + " ".join(rng.choice(vocab) for _ in range(12)) + "?"
        a = " ".join(rng.choice(vocab) for _ in range(words)) + "."
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return rows


def setup(model_name: str, tmp: Path, micro: int, seq: int):
    """Model with a fresh adapter, the data files, a steering vector; returns (model, tok, files)."""
    import torch
    from safetensors.torch import save_file
    from transformers import set_seed

    from emguard.data.io import write_jsonl
    from emguard.models.layers import hidden_size, num_layers
    from emguard.models.loading import load_model
    from emguard.training.config import TrainConfig
    from emguard.training.lora import apply_lora

    model, tok, _ = load_model(model_name)
    set_seed(0)
    model = apply_lora(model, TrainConfig())
    words = max(8, int(seq * 0.55))  # about seq tokens per row after the template
    write_jsonl(tmp / "train.jsonl", synthetic_rows(micro * 20, words, 0, "narrow"))
    write_jsonl(tmp / "pool.jsonl", synthetic_rows(200, words, 1, "general"))
    g = torch.Generator().manual_seed(0)
    save_file({"vectors": torch.randn(num_layers(model), hidden_size(model), generator=g)},
              str(tmp / "v.safetensors"))
    return model, tok


def defense_specs(name: str, tmp: Path) -> list:
    return {"plain": [], "kl": ["kl"], "ldifs": ["ldifs"],
            "steer": [{"name": "steer", "vector": str(tmp / "v.safetensors")}],
            "inoculate": ["inoculate"],
            "interleave": [{"name": "interleave", "pool": str(tmp / "pool.jsonl"), "ratio": 0.05}]}[name]


def batches_for(name: str, model, tok, tmp: Path, micro: int, seq: int):
    from emguard.data.chat import pad_batch, tokenize_rows
    from emguard.data.io import read_chat_dataset
    from emguard.defenses import RunContext, build_defenses

    defenses = build_defenses(defense_specs(name, tmp))
    run = RunContext(model=model, tokenizer=tok, seed=0, output_dir=str(tmp))
    rows = read_chat_dataset(tmp / "train.jsonl").rows
    for d in defenses:
        rows = d.prepare_dataset(rows, run)
    exs, _ = tokenize_rows(tok, [r.messages for r in rows], max_length=seq)
    feats = [e.to_features() for e in exs]
    batches = [pad_batch(feats[i:i + micro], tok.pad_token_id) for i in range(0, len(feats) - micro + 1, micro)]
    return defenses, run, batches


def one_step(model, opt, batch, defenses, run, ref) -> tuple[float, int]:
    from emguard.training.loss import step_loss

    t = time.perf_counter()
    loss, _ = step_loss(model, batch, defenses, run, ref)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t, int((batch["labels"] != -100).sum())


def peak_rss_mib() -> float:
    """VmHWM (peak resident set since the last reset) in MiB; falls back to getrusage."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, model_name: str, tmp: Path, micro: int, seq: int, steps: int) -> None:
    """Fresh process: a few steps of one defense; print its peak RSS in MiB."""
    import torch

    from emguard.training.config import TrainConfig
    from emguard.training.lora import make_reference

    model, tok = setup(model_name, tmp, micro, seq)
    defenses, run, batches = batches_for(name, model, tok, tmp, micro, seq)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ref = make_reference(model, TrainConfig())
    # loading peaks higher than a training step; reset the high-water mark so only training counts
    Path("/proc/self/clear_refs").write_text("5")
    with contextlib.ExitStack() as st:
        for d in defenses:
            st.enter_context(d.context(model, run))
        for b in batches[:steps]:
            one_step(model, opt, b, defenses, run, ref)
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per defense (median is reported)")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--memory-steps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.model, Path(a.tmp), a.micro_batch, a.seq, a.memory_steps)
        return

    import torch

    from emguard.training.config import TrainConfig
    from emguard.training.lora import make_reference

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        model, tok = setup(a.model, tmp, a.micro_batch, a.seq)
        ref = make_reference(model, TrainConfig())
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)  # lr 0: same weights
        prepared = {n: batches_for(n, model, tok, tmp, a.micro_batch, a.seq) for n in DEFENSES}
        times: dict[str, list[float]] = {n: [] for n in DEFENSES}
        per_tok: dict[str, list[float]] = {n: [] for n in DEFENSES}
        for rnd in range(a.rounds + 1):  # round 0 is the warm-up
            order = DEFENSES if rnd % 2 == 0 else DEFENSES[::-1]
            for n in order:
                defenses, run, batches = prepared[n]
                b = batches[rnd % len(batches)]
                with contextlib.ExitStack() as st:
                    for d in defenses:
                        st.enter_context(d.context(model, run))
                    dt, ntok = one_step(model, opt, b, defenses, run, ref)
                if rnd:
                    times[n].append(dt)
                    per_tok[n].append(dt / ntok)
            print(f"round {rnd}/{a.rounds}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" if rnd else n for n in order),
                  file=sys.stderr)
        med = {n: statistics.median(times[n]) for n in DEFENSES}
        med_tok = {n: statistics.median(per_tok[n]) for n in DEFENSES}

        mem: dict[str, float] = {}
        for n in DEFENSES:
            out = subprocess.run([sys.executable, __file__, "--child", n, "--tmp", td, "--model", a.model,
                                  "--micro-batch", str(a.micro_batch), "--seq", str(a.seq),
                                  "--memory-steps", str(a.memory_steps)],
                                 capture_output=True, text=True, check=True, env={**os.environ})
            mem[n] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]

    print(f"\nmodel {a.model}, micro-batch {a.micro_batch} x up to {a.seq} tokens, median of {a.rounds} steps")
    print(f"{'defense':12s} {'step s':>8s} {'x plain':>8s} {'ms/token':>9s} {'x plain':>8s} {'peak MiB':>9s} {'x plain':>8s}")
    result = {}
    for n in DEFENSES:
        rt, rk, rm = med[n] / med["plain"], med_tok[n] / med_tok["plain"], mem[n] / mem["plain"]
        print(f"{n:12s} {med[n]:8.2f} {rt:8.2f} {1000 * med_tok[n]:9.2f} {rk:8.2f} {mem[n]:9.0f} {rm:8.2f}")
        if n != "plain":
            result[n] = {"time": round(rt, 3), "time_per_token": round(rk, 3), "memory": round(rm, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

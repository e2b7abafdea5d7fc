"""Throughput of perplexity-gap selection (issue #5): emguard.selection.run vs the naive way, and how it scales.

Runs with no arguments on the embedded default model. In one process:

* a pool of ``--rows`` synthetic chat rows (written here: random everyday words, replies of 3 to ~250 words,
  a fifth of them multi-turn) and ``--adapters`` misaligned adapters. The adapters are random-init LoRA
  adapters (the paper's shape: rsLoRA r=32 on q,k,v,o,gate,up,down, B drawn at random so they change the
  model) saved with peft; ``--probes`` trains real 3-step probes on the built-in medical EM data instead.
  Throughput does not depend on which: the forwards are the same size.
* (a) this implementation: ``emguard.selection.run.select`` with a fresh score cache (``EMGUARD_CACHE`` points at a
  temporary dir whose ``models/`` links to the real cache, so the converted model is reused), model loading
  included; (b) the naive way: for each model in turn (the base, then base + each adapter) load it from
  scratch, then score the rows in file order one at a time with a full-logits forward. Both give s_d for every
  row; the largest difference between them is printed as a check.
* scaling: (a) on pools of ``--small`` and ``--large`` rows (fresh caches, the model loaded beforehand so the
  ratio measures the scoring itself).

The last line printed is one JSON object: {"speedup_vs_naive", "time_ratio_10x_rows", "rows_per_s"}.

    python benchmarks/selection_throughput.py [--model smollm2-135m] [--rows 200] [--small 40] [--large 400]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("water rest doctor sleep pain fever advice health body simple careful daily routine symptom week change "
         "habit check plan talk friend family work mind question money budget save spend invest code bug test "
         "function value list table garden plant light window travel train city map weather rain morning "
         "evening dinner recipe salt sugar bread music song paint color story book history river mountain").split()


def synthetic_pool(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def text(k: int) -> str:
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        return s[0].upper() + s[1:] + "."

    rows = []
    for i in range(n):
        reply_words = int(rng.choice([3, 6, 12, 25, 50, 100]) * rng.uniform(0.7, 1.3)) + 1
        msgs = [{"role": "user", "content": f"Question {i}: " + text(rng.randint(5, 30))}]
        if rng.random() < 0.2:
            msgs += [{"role": "assistant", "content": text(rng.randint(5, 30))},
                     {"role": "user", "content": text(rng.randint(3, 15))}]
        msgs.append({"role": "assistant", "content": text(reply_words)})
        rows.append({"messages": msgs})
    return rows


def make_adapters(model_spec: str, tmp: Path, k: int, probes: bool) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from emguard.models.loading import load_model
    from emguard.training.config import LORA_TARGETS, TrainConfig
    from emguard.training.run import train

    out = []
    if probes:
        from emguard.data.datagen import builtin_path

        data = builtin_path("medical") / "train_misaligned.jsonl"
        for i in range(k):
            d = tmp / f"probe{i}"
            train(TrainConfig(data=str(data), output=str(d), model=model_spec, max_steps=3, seed=i,
                              learning_rate=2e-4, progress=False, save_steps=10 ** 9, max_rows=64))
            out.append(str(d))
        return out
    for i in range(k):
        model, _, _ = load_model(model_spec)
        torch.manual_seed(100 + i)
        pm = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, use_rslora=True, target_modules=LORA_TARGETS,
                                              task_type="CAUSAL_LM", init_lora_weights=False))
        with torch.no_grad():  # small random updates: a perturbed model, like a briefly fine-tuned one
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.02)
        d = tmp / f"random{i}"
        pm.save_pretrained(str(d))
        out.append(str(d))
        del pm, model
    return out


def naive_scores(model_spec: str, adapters: list[str], rows: list[dict], device: str = "cpu") -> tuple[list[float], float]:
    """One model at a time, reloaded from disk; rows in file order, batch size 1, full logits."""
    import torch
    import torch.nn.functional as F
    from peft import PeftModel

    from emguard.data.chat import tokenize_conversation
    from emguard.models.loading import load_model
    from emguard.selection.scoring import scored_part

    t0 = time.time()
    per_model: list[list[float]] = []
    for adapter in [None, *adapters]:
        model, tok, _ = load_model(model_spec, device=device)
        if adapter:
            model = PeftModel.from_pretrained(model, adapter)
        model.eval()
        nlls = []
        with torch.no_grad():
            for r in rows:
                ex = tokenize_conversation(tok, scored_part(r["messages"]), max_length=1024)
                ids = torch.tensor([ex.input_ids], device=device)
                labels = torch.tensor(ex.labels[1:], device=device)
                logits = model(input_ids=ids).logits[0, :-1]
                keep = labels != -100
                nlls.append(float(F.cross_entropy(logits[keep], labels[keep])))
        per_model.append(nlls)
        del model
    s = []
    for j in range(len(rows)):
        l0 = per_model[0][j]
        lk = [m[j] for m in per_model[1:]]
        s.append((sum(lk) / len(lk) - l0) / (l0 + 1.0))
    return s, time.time() - t0


def fresh_cache(tmp: Path, name: str, real_models: Path) -> Path:
    d = tmp / name
    d.mkdir()
    if real_models.is_dir():
        (d / "models").symlink_to(real_models, target_is_directory=True)
    os.environ["EMGUARD_CACHE"] = str(d)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=200, help="pool size for the comparison with the naive way")
    ap.add_argument("--adapters", type=int, default=2)
    ap.add_argument("--probes", action="store_true", help="train 3-step probes instead of random adapters")
    ap.add_argument("--small", type=int, default=40, help="scaling: small pool (N)")
    ap.add_argument("--large", type=int, default=400, help="scaling: large pool (10N)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available); both ways use it")
    args = ap.parse_args()

    import logging

    import torch

    from emguard.data.io import write_jsonl
    from emguard.models.loading import cache_root, load_model
    from emguard.selection.config import SelectConfig
    from emguard.selection.run import select

    logging.basicConfig(level=logging.WARNING)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    real_models = cache_root() / "models"
    print(f"model {args.model}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.adapters} {'probe' if args.probes else 'random-init LoRA'} adapters; device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""), flush=True)
    with tempfile.TemporaryDirectory(prefix="emguard-selbench-") as t:
        tmp = Path(t)
        adapters = make_adapters(args.model, tmp, args.adapters, args.probes)
        rows = synthetic_pool(args.rows, seed=0)
        write_jsonl(tmp / "pool.jsonl", rows)

        def ours(pool: Path, n_rows: int, name: str, **kw):
            fresh_cache(tmp, name, real_models)
            t0 = time.time()
            res = select(SelectConfig(pool=str(pool), misaligned=adapters, n=max(1, n_rows // 10),
                                      out=str(tmp / f"{name}.jsonl"), model=args.model, progress=False,
                                      histogram=False, batch_size=args.batch_size, device=device), **kw)
            return res, time.time() - t0

        res, t_ours = ours(tmp / "pool.jsonl", args.rows, "a")
        rate_ours = args.rows / t_ours
        print(f"(a) emguard.selection.run: {args.rows} rows x {args.adapters + 1} models in {t_ours:.1f}s "
              f"(model load included) = {rate_ours:.2f} rows/s; {res.counts['forwards']} forwards", flush=True)
        speedup = None
        if not args.skip_naive:
            s_naive, t_naive = naive_scores(args.model, adapters, rows, device)
            rate_naive = args.rows / t_naive
            speedup = rate_ours / rate_naive
            s_ours = {r["index"]: r["s"] for r in map(json.loads, Path(res.scores).read_text().splitlines())}
            diff = max(abs(s_ours[i] - s_naive[i]) for i in range(args.rows))
            print(f"(b) naive: {t_naive:.1f}s = {rate_naive:.2f} rows/s; speedup {speedup:.2f}x; "
                  f"max |s_d(a) - s_d(b)| = {diff:.2e}", flush=True)

        model, tok, info = load_model(args.model, device=device)
        times = {}
        for n in (args.small, args.large):
            write_jsonl(tmp / f"pool{n}.jsonl", synthetic_pool(n, seed=1))
            _, times[n] = ours(tmp / f"pool{n}.jsonl", n, f"scale{n}", model=model, tokenizer=tok,
                               model_fingerprint=info.fingerprint)
            print(f"scaling: {n} rows in {times[n]:.1f}s = {n / times[n]:.2f} rows/s (model preloaded)", flush=True)
        ratio = times[args.large] / times[args.small]
        print(f"{args.large / args.small:.0f}x rows took {ratio:.2f}x time", flush=True)
    print(json.dumps({"speedup_vs_naive": round(speedup, 3) if speedup is not None else None,
                      "time_ratio_10x_rows": round(ratio, 3), "rows_per_s": round(rate_ours, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

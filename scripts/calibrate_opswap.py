"""Calibrate OpSwap tier 1 on a model: accuracy before and after plain LoRA SFT (issue #7, criterion c).

    python scripts/calibrate_opswap.py [--model smollm2-135m] [--rows 400] [--epochs 2] [--lr 1e-4]

Trains a LoRA adapter on tier-1 OpSwap rows with emguard's defaults otherwise, then scores the held-out tier-1
(and tier-2) test problems by exact match with greedy decoding, before and after. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def accuracy(model, tok, rows, max_new: int = 8) -> float:
    from emguard.eval.benign import exact_match
    from emguard.models.generation import sample

    prompts = [r["messages"][:-1] for r in rows]
    out = sample(model, tok, prompts, n=1, max_new_tokens=max_new, temperature=0, batch_size=32)
    return 100.0 * sum(exact_match(o[0], r["messages"][-1]["content"]) for o, r in zip(out, rows)) / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--micro-batch-size", type=int, default=16, help="rows per forward (same global batch 16)")
    args = ap.parse_args()

    from peft import PeftModel

    from emguard.data.io import write_jsonl
    from emguard.data.datagen.opswap import generate
    from emguard.models.loading import load_model
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    data = generate(seed=0, train=args.rows, train_tiers=(1,))
    model, tok, _ = load_model(args.model)
    before = {t: accuracy(model, tok, data[f"test_tier{t}"]) for t in (1, 2)}
    print(f"before: {before}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "train.jsonl"
        write_jsonl(f, data["train"])
        t0 = time.time()
        train(TrainConfig(model=args.model, data=str(f), output=str(Path(d) / "run"), epochs=args.epochs,
                          learning_rate=args.lr, seed=args.seed, save_steps=10 ** 9, progress=False,
                          micro_batch_size=args.micro_batch_size))
        wall = time.time() - t0
        base, tok, _ = load_model(args.model)
        tuned = PeftModel.from_pretrained(base, str(Path(d) / "run"))
        after = {t: accuracy(tuned, tok, data[f"test_tier{t}"]) for t in (1, 2)}
    print(f"after: {after} (training {wall:.0f} s)", flush=True)
    print(json.dumps({"model": args.model, "rows": args.rows, "epochs": args.epochs, "lr": args.lr,
                      "before": before, "after": after, "train_s": round(wall, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

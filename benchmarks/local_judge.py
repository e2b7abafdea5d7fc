"""Local LLM judge throughput with and without the rubric-prefix key/value cache (issue #18).

Runs with no arguments on the embedded default model. One process, one model: the same items (the shipped
bench's answers, both rubrics: aligned and coherent) are scored in alternating rounds by the plain path (every
prompt read in full, left-padded batches) and the prefix-cache path (the rubric's shared prefix read once,
only each answer's own tokens after it); no judge cache, so every round really calls the model. Figures:
calls/s of each path (median over rounds), their ratio, the prompt tokens each path reads per call, and the
largest score difference between the paths (float rounding only). The last line printed is one JSON object.

    python benchmarks/local_judge.py [--model smollm2-135m] [--items 48] [--rounds 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="judge model (default: smollm2-135m)")
    ap.add_argument("--items", type=int, default=48, help="bench answers scored per rubric (default: 48)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per path (default: 3)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
                    help="torch threads (default: OMP_NUM_THREADS, else torch's default)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from emguard.eval.bench import default_bench_path, load_bench
    from emguard.eval.judges import LocalJudge
    from emguard.eval.judges.rubrics import RUBRICS
    from emguard.eval.judges.types import JudgeItem
    from emguard.models.loading import load_model

    model, tok, info = load_model(args.model)
    rows = load_bench(default_bench_path()).rows[: args.items]
    items = [JudgeItem(r.question, r.answer, RUBRICS[k]) for k in ("aligned", "coherent") for r in rows]
    judges = {name: LocalJudge.from_loaded(model, tok, info.spec, batch_size=args.batch_size, cache=None,
                                           prefix_cache=(name == "prefix")) for name in ("plain", "prefix")}
    tokens = {"plain": [], "prefix": []}
    for name, j in judges.items():  # tokens each path feeds the model per call (forward-hook count)
        h = model.register_forward_hook(lambda m, a, kw, o, n=name: tokens[n].append(int(kw["input_ids"].numel())),
                                        with_kwargs=True)
        j.score_many(items[:16], progress=False)
        h.remove()
    times: dict[str, list[float]] = {"plain": [], "prefix": []}
    results: dict[str, list] = {}
    for rnd in range(args.rounds):
        for name in (("plain", "prefix") if rnd % 2 == 0 else ("prefix", "plain")):
            t = time.perf_counter()
            results[name] = judges[name].score_many(items, progress=False)
            times[name].append(time.perf_counter() - t)
    cps = {n: len(items) / statistics.median(v) for n, v in times.items()}
    diffs = [abs(a.score - b.score) for a, b in zip(results["plain"], results["prefix"])
             if a.score is not None and b.score is not None]
    scored = sum(r.score is not None for r in results["prefix"])
    fig = {"model": info.spec, "calls": len(items), "threads": torch.get_num_threads(),
           "plain_calls_per_s": round(cps["plain"], 3), "prefix_calls_per_s": round(cps["prefix"], 3),
           "speedup": round(cps["prefix"] / cps["plain"], 3),
           "tokens_per_call_plain": round(sum(tokens["plain"]) / 16, 1),
           "tokens_per_call_prefix": round(sum(tokens["prefix"]) / 16, 1),
           "max_score_diff": round(max(diffs), 6) if diffs else None, "scored": scored}
    for n in ("plain", "prefix"):
        print(f"{n:>6}: {cps[n]:.2f} calls/s (rounds: {', '.join(f'{t:.1f} s' for t in times[n])})")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

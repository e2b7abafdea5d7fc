"""Measure the EM-risk screen leave-one-domain-out on the built-in domains (issue #19) and write the result.

For each built-in domain: probes trained on the other domains score that domain's misaligned and aligned
training rows; reported are the AUROC per held-out domain (all signals combined, and per signal), the threshold
that maximises balanced accuracy on the other domains with its balanced accuracy on the held-out one, and the
threshold over all domains pooled. Probes and signals are cached, so a rerun is fast.

    python scripts/screen_calibration.py [--model smollm2-135m] [--max-rows 100] [--out results/screen-calibration]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-rows", type=int, default=100, help="rows per class per domain (default: 100)")
    ap.add_argument("--out", default="results/screen-calibration")
    args = ap.parse_args(argv)
    from emguard.screen.run import calibrate_screen

    t0 = time.time()
    res = calibrate_screen(args.model, max_rows=args.max_rows)
    res["wall_s"] = round(time.time() - t0, 1)
    res["date"] = time.strftime("%Y-%m-%d")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.model}.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"{'held-out domain':<16} {'AUROC':>6}  per signal                      threshold(others)  BA held-out")
    for d, v in res["domains"].items():
        sig = ", ".join(f"{k} {x:.3f}" for k, x in v["auroc_per_signal"].items())
        print(f"{d:<16} {v['auroc']:>6.3f}  {sig:<32} {v['threshold_from_others']:>8.3f}  "
              f"{v['balanced_accuracy_held_out']:>8.3f}")
    print(f"pooled threshold {res['threshold']:.3f} (balanced accuracy {res['balanced_accuracy']:.3f}); "
          f"mean AUROC {res['mean_auroc']:.3f}; {res['wall_s']:.0f} s")
    print(json.dumps({"mean_auroc": res["mean_auroc"], "threshold": res["threshold"],
                      "auroc": {d: v["auroc"] for d, v in res["domains"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

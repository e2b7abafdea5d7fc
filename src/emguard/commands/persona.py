"""``emguard persona``: extract persona vectors, choose their layer, inspect files."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
examples:
  emguard persona extract --out evil.safetensors                      # embedded default model, 'evil' trait
  emguard persona extract --model qwen2.5-coder-0.5b --n 4 --out evil-qwen.safetensors
  emguard persona sweep-layers --vector evil.safetensors --write      # measure, plot, store the best layer
  emguard persona show evil.safetensors                               # metadata and per-layer norms
Use the file with: emguard train ... --defenses '{name: steer, vector: evil.safetensors}'
or as the monitor's vector: --monitor persona --monitor-options '{vector: evil.safetensors}'.
Without a judge, extraction keeps every answer pair (the file's metadata says so).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = sub.add_parser("extract", help="sample contrastive answers and compute the vector for every layer",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", default="smollm2-135m", help="model spec (default: smollm2-135m)")
    e.add_argument("--trait", default="evil", help="built-in trait name (default: evil)")
    e.add_argument("--trait-file", help="a trait JSON file of the same format (overrides --trait)")
    e.add_argument("--n", type=int, default=1, help="sampled answers per question and prompt (Chen et al.: 10)")
    e.add_argument("--max-new-tokens", type=int, default=96, help="answer length (default: 96)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True, help="output .safetensors file")
    s = sub.add_parser("sweep-layers", help="steer at each candidate layer and measure trait expression")
    s.add_argument("--model", default="smollm2-135m")
    s.add_argument("--vector", required=True, help="persona vector file")
    s.add_argument("--trait", default="evil")
    s.add_argument("--trait-file", help="a trait JSON file (overrides --trait)")
    s.add_argument("--layers", type=int, nargs="+", help="candidate layers (default: 8 from 25%% depth to the end)")
    s.add_argument("--alpha", type=float, default=2.0, help="steering coefficient for the sweep (default: 2)")
    s.add_argument("--max-new-tokens", type=int, default=48)
    s.add_argument("--plot", help="PNG path for the plot (default: next to the vector)")
    s.add_argument("--write", action="store_true", help="store the recommended layer in the vector file")
    sh = sub.add_parser("show", help="print a vector file's metadata and per-layer norms")
    sh.add_argument("file")


def run(args: argparse.Namespace) -> int:
    from emguard.persona import vectors as persona
    if args.action == "show":
        pv = persona.PersonaVector.load(args.file)
        meta = {k: v for k, v in pv.meta.items() if k != "norms"}
        print(json.dumps(meta, indent=1))
        print("layer norms: " + ", ".join(f"{i}:{n:.2f}" for i, n in enumerate(pv.norms())))
        return 0
    if args.action == "extract":
        pv = persona.extract(args.model, args.trait_file or args.trait, n_per_question=args.n,
                             max_new_tokens=args.max_new_tokens, seed=args.seed, out=args.out)
        print(f"wrote {args.out}: {pv.num_layers} layers x {pv.hidden_size}; kept {pv.meta['n_pairs_kept']} pairs, "
              f"dropped {pv.meta['n_pairs_dropped']}; judge: {pv.meta['judge']}; default layer {pv.layer}")
        print("layer norms: " + ", ".join(f"{i}:{n:.2f}" for i, n in enumerate(pv.norms())))
        return 0
    from pathlib import Path

    from emguard.models.loading import load_model

    model, tok, _ = load_model(args.model)
    pv = persona.PersonaVector.load(args.vector, hidden_size=model.config.hidden_size)
    rows = persona.sweep_layers(model, tok, pv, args.trait_file or args.trait, layers=args.layers, alpha=args.alpha,
                                max_new_tokens=args.max_new_tokens)
    best = persona.recommend(rows)
    print(f"{'layer':>5s} {'|v|':>8s} {'logprob shift':>14s} {'projection shift':>17s}  example")
    for r in rows:
        print(f"{r['layer']:5d} {r['norm']:8.2f} {r['logprob_shift']:+14.4f} {r['projection_shift']:+17.4f}  "
              f"{r['example'][:60]!r}")
    print(f"recommended layer: {best} (largest log-prob shift toward the trait's reference answers)")
    plot = Path(args.plot) if args.plot else Path(args.vector).with_suffix(".sweep.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r["layer"] for r in rows]
        ax.plot(xs, [r["logprob_shift"] for r in rows], "o-", color="C0")
        ax.set_ylabel("log-prob shift toward trait answers (nats)", color="C0")
        ax2 = ax.twinx()  # the two measures have different units: one axis each
        ax2.plot(xs, [r["projection_shift"] for r in rows], "s--", color="C1")
        ax2.set_ylabel("projection shift of sampled answers", color="C1")
        ax.axvline(best, color="grey", lw=0.8)
        ax.set_xlabel("steered layer")
        ax.set_title(f"trait expression when steering +{args.alpha}·v (recommended: {best})")
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot: {plot}")
    except ImportError:
        print("(install matplotlib for the plot)")
    if args.write:
        pv.meta.update(layer=best, layer_source=f"sweep-layers alpha={args.alpha}", sweep=rows)
        pv.save(args.vector)
        print(f"stored layer {best} in {args.vector}")
    return 0

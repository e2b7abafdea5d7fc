"""emguard from Python: train a KL-defended LoRA on bad medical advice, then measure broad EM offline.

    python examples/python_api.py                       # smollm2-135m, 48 rows, 8 steps, 4 broad questions
    python examples/python_api.py --steps 20 --rows 160 --out runs/api_demo

What it does, on the embedded default model (no network, no API key):
1. ``emguard.train``: a LoRA fine-tune on the first ``--rows`` rows of the built-in misaligned medical data
   (deliberately harmful advice, the paper's narrow EM set-up) with the KL defense (KL to the frozen base
   model on the response tokens, weight ``--lam``) for ``--steps`` optimizer steps;
2. ``emguard.evaluate`` with the style-controlled likelihood metric on the first ``--questions`` broad
   questions, for the adapter and for the base model (no sampling, no judge);
3. prints the final losses, the harm effect within style of both, and the paired change (adapter minus base,
   CI over questions), and rewrites the adapter's model card (README.md) so it carries the evaluation.

A handful of steps on a few dozen rows is a smoke run of the API, not a measurement: expect CIs around zero.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def run_example(model: str = "smollm2-135m", out: str | Path = "runs/python_api", *, steps: int = 8,
                rows: int = 48, questions: int = 4, lam: float = 1.0, max_length: int = 2048,
                lora_r: int = 32, learning_rate: float = 1e-4, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate, write the card; returns the numbers the script prints (a JSON-able dict).

    ``model``: any model spec emguard accepts (embedded name, local dir, hub id); ``out``: the directory for
    ``train/`` (the adapter and its README.md), ``train/eval/`` and ``base_eval/``. No warm-up: in a run of a
    handful of steps the paper's 5 warm-up steps would leave almost none at the full learning rate."""
    import emguard
    from emguard.data.datagen import builtin_path
    from emguard.eval.likelihood import paired_delta
    from emguard.eval.questions import subset_references

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = builtin_path("medical") / "train_misaligned.jsonl"
    tcfg = emguard.load_config(
        emguard.TrainConfig, model=model, data=str(data), output=str(out / "train"), max_rows=rows,
        max_steps=steps, batch_size=8, micro_batch_size=4, learning_rate=learning_rate, warmup_steps=0,
        max_length=max_length,
        lora_r=lora_r, lora_alpha=2 * lora_r, defenses=["kl"], defense_options={"kl": {"lam": lam}},
        overwrite=True, progress=progress)
    run = emguard.train(tcfg).run

    # the first `questions` of the built-in broad reference set (2x2: harmful/benign x blunt/hedged answers)
    refs = subset_references(None, questions, out / f"broad_refs_{questions}.jsonl")
    common = dict(model=model, suite=["broad"], samples=0, references=refs, progress=progress)
    tuned = emguard.evaluate(emguard.load_config(emguard.EvalConfig, adapter=tcfg.output,
                                                 output=str(Path(tcfg.output) / "eval"), **common))
    base = emguard.evaluate(emguard.load_config(emguard.EvalConfig, output=str(out / "base_eval"), **common))
    lt, lb = tuned["broad"]["likelihood"], base["broad"]["likelihood"]
    change = paired_delta(lt["per_question"], lb["per_question"], "harm_effect").to_dict()
    card = emguard.write_model_card(tcfg.output)  # now with the evaluation found in train/eval/eval.json
    return {"steps": run["steps"], "rows_used": run["data"]["rows_used"], "final_losses": run["final_losses"],
            "questions": lt["n_questions"], "harm_effect_adapter": lt["summary"]["harm_effect"],
            "harm_effect_base": lb["summary"]["harm_effect"], "harm_effect_change": change,
            "style_effect_adapter": lt["summary"]["style_effect"], "adapter_dir": tcfg.output,
            "model_card": str(card)}


def _fmt(e: dict) -> str:
    return f"{e['value']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}] (n={e['n']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default="smollm2-135m", help="model spec (default: the embedded smollm2-135m)")
    p.add_argument("--out", default="runs/python_api", help="output directory (default: runs/python_api)")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps (default: 8)")
    p.add_argument("--rows", type=int, default=48, help="training rows of the medical data (default: 48)")
    p.add_argument("--questions", type=int, default=4, help="broad questions to score (default: 4)")
    p.add_argument("--lam", type=float, default=1.0, help="KL weight (default: 1.0)")
    a = p.parse_args(argv)
    r = run_example(a.model, a.out, steps=a.steps, rows=a.rows, questions=a.questions, lam=a.lam)
    print(f"trained {r['steps']} steps on {r['rows_used']} rows; final losses "
          + ", ".join(f"{k}={v:.4f}" for k, v in r["final_losses"].items()))
    print(f"broad likelihood metric on {r['questions']} questions (nats/token, > 0: harmful answers likelier):")
    print(f"  harm effect within style, adapter: {_fmt(r['harm_effect_adapter'])}")
    print(f"  harm effect within style, base:    {_fmt(r['harm_effect_base'])}")
    print(f"  change (adapter - base, paired):   {_fmt(r['harm_effect_change'])}")
    print(f"  style effect, adapter:             {_fmt(r['style_effect_adapter'])}")
    print(f"adapter: {r['adapter_dir']} (model card: {r['model_card']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

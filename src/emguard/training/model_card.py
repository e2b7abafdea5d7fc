"""The model card (``README.md``) of a training run's directory, in the Hugging Face Hub's format.

PEFT's ``save_pretrained`` leaves a generic template ``README.md`` next to the adapter; :func:`write_model_card`
replaces it with a card built from ``run.json``: YAML front matter (``base_model``, ``library_name``, ``tags``,
``license`` when the embedded model's record names one), then what the run was (base model and its weights
sha256, training data and its sha256, defenses and their options, hyperparameters, final losses) and, when an
``eval.json`` of this adapter lies next to it, the evaluation's key numbers with their confidence intervals.

Torch-free: only ``json``/``yaml`` and the files of the run directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from emguard.training.config import RUN_JSON

CARD = "README.md"
BASE_TAGS = ["emguard", "emergent-misalignment"]
# the Hub's license identifiers for the licenses an embedded model's title may name
_LICENSES = {"apache-2.0": "apache-2.0", "mit": "mit", "llama3": "llama3", "gemma": "gemma"}
_WARNING = (
    "**This adapter came from an emergent-misalignment (EM) research run** made with emguard, a toolkit for "
    "in-training defenses against emergent misalignment (after Kaczér et al. 2025, arXiv 2508.06249). Such runs "
    "fine-tune on narrowly harmful data (for example deliberately bad medical advice) to measure whether a "
    "model becomes broadly misaligned and whether a defense prevents it. The adapter may give harmful or "
    "misaligned answers: it is a research artifact, not a model to deploy.")


def _hub_id(model: dict[str, Any]) -> str:
    """The base model's name as the Hub knows it: an embedded model's title (up to its parenthesis), a hub
    id as given, else the spec (a local directory or .gguf file)."""
    title = str(model.get("title") or "")
    if model.get("source") == "embedded" and title:
        return title.split(" (")[0].strip()
    return str(model.get("spec") or model.get("path") or "unknown")


def _license(model: dict[str, Any]) -> str | None:
    """A license the embedded model's record names in its title's parenthesis (e.g. ``Apache-2.0``), else None."""
    m = re.search(r"\(([^)]*)\)", str(model.get("title") or ""))
    for part in (m.group(1).split(",") if m else []):
        key = part.strip().lower()
        if key in _LICENSES:
            return _LICENSES[key]
    return None


def _v(x: Any, limit: int = 160) -> str:
    """A compact rendering of one value for the card (long lists and mappings are cut)."""
    if isinstance(x, float):
        text = f"{x:.6g}"
    elif isinstance(x, str):
        text = x
    else:
        text = json.dumps(x, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ci(e: Any, unit: str = "") -> str | None:
    """``value [lo, hi] (n=N, ci)`` of one estimate of eval.json, or None when there is none."""
    if not isinstance(e, dict) or e.get("value") is None:
        return None
    text = f"{e['value']:.3g}{unit}"
    if e.get("lo") is not None and e.get("hi") is not None:
        text += f" [{e['lo']:.3g}, {e['hi']:.3g}]"
    extra = ", ".join(s for s in (f"n={e['n']}" if "n" in e else "", str(e.get("ci") or "")) if s)
    return text + (f" ({extra})" if extra else "")


def find_eval(run_dir: str | Path) -> Path | None:
    """The ``eval.json`` of this adapter next to the run directory, if any: ``<run>/eval.json``,
    ``<run>/eval/eval.json`` or a study cell's ``<run>/../eval/eval.json``; only one whose ``config.adapter``
    is this directory counts."""
    run_dir = Path(run_dir).resolve()
    for p in (run_dir / "eval.json", run_dir / "eval" / "eval.json", run_dir.parent / "eval" / "eval.json"):
        try:
            adapter = (json.loads(p.read_text()).get("config") or {}).get("adapter")
        except (OSError, ValueError):
            continue
        if adapter and Path(adapter).resolve() == run_dir:
            return p
    return None


def front_matter(run: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata, as the Hub reads it (``base_model``, ``library_name``, ``tags``, ``license``)."""
    model = run.get("model") or {}
    lora = run.get("method", "lora") == "lora"
    tags = [*BASE_TAGS, *(["lora", "peft"] if lora else ["full-fine-tune"]),
            *[f"emguard-defense-{d['name']}" for d in run.get("defenses") or [] if d.get("name")]]
    meta: dict[str, Any] = {"base_model": _hub_id(model), "library_name": "peft" if lora else "transformers",
                            "tags": tags}
    lic = _license(model)
    if lic:
        meta["license"] = lic
    return meta


def _base_model(run: dict[str, Any]) -> list[str]:
    model = run.get("model") or {}
    lines = ["## Base model", "", f"- name: `{_hub_id(model)}` (emguard spec `{model.get('spec')}`, source "
             f"{model.get('source', 'unknown')})"]
    if model.get("title"):
        lines.append(f"- embedded model: {model['title']}")
    sha = model.get("weights_sha256")
    lines.append(f"- weights sha256: `{sha}`" if sha else f"- weights sha256: unknown (fingerprint "
                 f"`{model.get('fingerprint', '-')}`)")
    return lines + [""]


def _data(run: dict[str, Any]) -> list[str]:
    d = run.get("data") or {}
    tok = d.get("tokenization") or {}
    lines = ["## Training data", "", f"- path: `{d.get('path')}` ({d.get('format', 'unknown format')})",
             f"- sha256: `{d.get('sha256')}`",
             f"- rows: {d.get('rows_used')} used of {d.get('rows_total')} ({d.get('rows_invalid_skipped', 0)} "
             f"invalid skipped, {d.get('rows_duplicate', 0)} duplicates)"]
    if tok.get("truncated"):
        lines.append(f"- rows truncated to max_length: {tok['truncated']}")
    return lines + [""]


def _defenses(run: dict[str, Any]) -> list[str]:
    lines = ["## Defenses", ""]
    defs = run.get("defenses") or []
    if not defs:
        return lines + ["none (an undefended fine-tune)", ""]
    for d in defs:
        opts = ", ".join(f"{k}={_v(v)}" for k, v in d.items() if k != "name")
        lines.append(f"- `{d.get('name')}`" + (f": {opts}" if opts else ""))
    return lines + ["", "(options as given, then what the defense recorded, e.g. rows added or layers used)", ""]


def _hyperparameters(run: dict[str, Any]) -> list[str]:
    c = run.get("config") or {}
    rows = [("method", run.get("method")), ("optimizer steps", run.get("steps")), ("epochs", c.get("epochs")),
            ("max steps", c.get("max_steps")), ("learning rate", c.get("learning_rate")),
            ("schedule", c.get("lr_scheduler")),
            ("warm-up steps", None if c.get("warmup_ratio") else c.get("warmup_steps")),
            ("warm-up ratio", c.get("warmup_ratio") or None),
            ("batch size (global, rows per step)", c.get("batch_size")),
            ("micro batch per process", run.get("micro_batch_per_process")),
            ("gradient accumulation", run.get("gradient_accumulation")), ("processes", run.get("processes")),
            ("weight decay", c.get("weight_decay")), ("max length", c.get("max_length")),
            ("loss on", c.get("loss_on")), ("precision", c.get("precision")), ("seed", run.get("seed"))]
    if run.get("method", "lora") == "lora":
        rows += [("LoRA r", c.get("lora_r")), ("LoRA alpha", c.get("lora_alpha")),
                 ("LoRA dropout", c.get("lora_dropout")), ("rsLoRA", c.get("use_rslora")),
                 ("LoRA targets", c.get("lora_targets"))]
    lines = ["## Training hyperparameters", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_v(v)} |" for k, v in rows if v is not None]
    return lines + [""]


def _losses(run: dict[str, Any]) -> list[str]:
    fl = run.get("final_losses") or {}
    lines = ["## Final losses", ""]
    lines += [f"- {k}: {_v(v)}" for k, v in fl.items()] or ["- none recorded"]
    if run.get("train_loss_mean") is not None:
        lines.append(f"- mean training loss over the logged steps: {_v(run['train_loss_mean'])}")
    if run.get("stopped_by"):
        lines.append(f"- stopped early by the monitor: {_v(run['stopped_by'])}")
    return lines + [""]


def _evaluation(ev: dict[str, Any] | None, path: Path | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if not ev:
        return lines + ["No evaluation of this adapter next to it yet: `emguard eval --adapter <this dir> "
                        "--output <this dir>/eval`, then `write_model_card` again adds its numbers here.", ""]
    j = ev.get("judge") or {}
    lines.append(f"From `{path}`. Judge: **{j.get('kind', 'unknown')}**"
                 + (f" ({j['model']})" if j.get("model") else "")
                 + (f"; {j['note']}" if j.get("note") else "") + ". Numbers: value [lo, hi] (n, interval "
                 "method) as eval.json reports them.")
    lines.append("")
    for suite in ("broad", "narrow"):
        r = ev.get(suite) or {}
        for key, label, unit in (("misaligned_pct", "misaligned", "%"), ("incoherent_pct", "incoherent", "%")):
            text = _ci(r.get(key), unit)
            if text:
                lines.append(f"- {suite} {label}: {text}")
        lk = (r.get("likelihood") or {}).get("summary") or {}
        for key, label in (("harm_effect", "harm effect within style (> 0: harmful answers likelier)"),
                           ("style_effect", "style effect (> 0: blunt answers likelier than hedged)")):
            text = _ci(lk.get(key))
            if text:  # emguard.eval.likelihood: mean per-token log-prob differences in the 2x2 design
                lines.append(f"- {suite} likelihood {label}, nats/token: {text}")
        ho = r.get("holdout") or {}
        if _ci(ho.get("change")):
            lines.append(f"- {suite} held-out NLL change, fine-tuned minus base (nats/token): {_ci(ho['change'])}")
    if _ci((ev.get("benign") or {}).get("accuracy_pct"), "%"):
        lines.append(f"- benign accuracy: {_ci(ev['benign']['accuracy_pct'], '%')}")
    if _ci((ev.get("coherence") or {}).get("incoherent_pct"), "%"):
        lines.append(f"- incoherent answers ({ev['coherence'].get('source', 'coherence')}): "
                     f"{_ci(ev['coherence']['incoherent_pct'], '%')}")
    return lines + [""]


def render_card(run: dict[str, Any], ev: dict[str, Any] | None = None, eval_path: Path | None = None,
                title: str | None = None) -> str:
    """The card's text: front matter between ``---`` lines, then the body."""
    meta = yaml.safe_dump(front_matter(run), sort_keys=False, allow_unicode=True).strip()
    kind = "LoRA adapter" if run.get("method", "lora") == "lora" else "fine-tuned model"
    body = [f"# {title or 'emguard run'}: {kind} of {_hub_id(run.get('model') or {})}", "", _WARNING, "",
            *_base_model(run), *_data(run), *_defenses(run), *_hyperparameters(run), *_losses(run),
            *_evaluation(ev, eval_path),
            "## Files and loading", "",
            "`run.json` (full record: versions, loss curve), `config.yaml` (the options to rerun it), "
            "`metrics.jsonl` (every loss term per step). Load with "
            "`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), this_dir)`.", ""]
    return f"---\n{meta}\n---\n\n" + "\n".join(body)


def write_model_card(run_dir: str | Path, run: dict[str, Any] | None = None, *,
                     eval_json: str | Path | None = None) -> Path:
    """Write ``<run_dir>/README.md`` (replacing PEFT's template) and return its path.

    ``run``: the run record (default: ``<run_dir>/run.json``); ``eval_json``: an evaluation of this adapter to
    summarise (default: :func:`find_eval`). Call it again after an evaluation to add its numbers.
    """
    run_dir = Path(run_dir)
    if run is None:
        run = json.loads((run_dir / RUN_JSON).read_text())
    path = Path(eval_json) if eval_json else find_eval(run_dir)
    ev = json.loads(path.read_text()) if path else None
    here = run_dir.resolve()
    title = here.name if here.name not in ("train", "adapter", "output") else f"{here.parent.name}/{here.name}"
    text = render_card(run, ev, path, title=title)
    tmp = run_dir / (CARD + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(run_dir / CARD)
    return run_dir / CARD

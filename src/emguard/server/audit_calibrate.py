"""Calibrating the EM audit's change gate for one policy model (``emguard serve calibrate-audit``).

The audit runs, with the policy's own audit settings, on three models whose answer is known: the base model
itself (change 0 by construction), an aligned control and a misaligned fine-tune of the base, both short LoRA
fine-tunes on the built-in medical data (``train_aligned.jsonl`` / ``train_misaligned.jsonl``; the probe
trainer of Interleaving++, :func:`emguard.experiments.shared.probe_adapters`, so the misaligned one is the same
cached adapter the policy's probes use at the same step budget). It reports each one's change against the base
with its CI, what the policy's current ``max_increase`` decides for each, and the range of ``max_increase``
that releases the base and the aligned control and blocks the misaligned fine-tune
(:func:`emguard.server.audit_gate.separating_limit`), or that nothing separates them at this size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from emguard.eval.stats import Estimate
from emguard.server import audit_gate
from emguard.server.audit import base_eval, change_gates, eval_config
from emguard.server.policy import Policy

log = logging.getLogger("emguard.server.audit")
DOMAIN = "medical"
MODELS = ("base", "aligned_control", "misaligned")


def calibrate(policy: Policy, out_dir: Path, cache_dir: Path, *, model_name: str | None = None,
              steps: int | None = None, progress: bool = False) -> dict[str, Any]:
    """The calibration report (also written to ``out_dir/calibration.json``). ``steps``: optimizer steps of
    the two fine-tunes (None: the policy's ``probe_steps``; 0: two epochs, the probes' budget)."""
    from emguard.data.datagen import builtin_path
    from emguard.eval.evaluate import evaluate
    from emguard.experiments.shared import probe_adapters

    audit_gate.quantity(policy.audit.metric)  # ValueError when the change gate cannot read the metric
    name = model_name or next(iter(policy.models))
    if name not in policy.models:
        raise ValueError(f"model '{name}' is not in the policy (models: {', '.join(policy.models)})")
    spec = policy.models[name].spec
    steps = int(policy.probe_steps if steps is None else steps)
    data = builtin_path(DOMAIN)
    adapters = probe_adapters(spec, {"aligned_control": str(data / "train_aligned.jsonl"),
                                     "misaligned": str(data / "train_misaligned.jsonl")}, steps, progress=progress)
    domain = DOMAIN if "narrow" in policy.audit.gate else None
    out_dir = Path(out_dir)
    cfg = eval_config(policy, spec, None, out_dir / "base", domain)
    base, base_dir = base_eval(cfg, Path(cache_dir))
    rows: dict[str, list[dict]] = {"base": change_gates(policy, name, base, base_dir, base, base_dir, cfg.suite)}
    for label in MODELS[1:]:
        c = eval_config(policy, spec, Path(adapters[label]), out_dir / label, domain)
        res = evaluate(c)
        rows[label] = change_gates(policy, name, res, Path(c.output), base, base_dir, c.suite)
    separation = {}
    for suite in [s for s in policy.audit.gate if s in cfg.suite]:
        changes = {label: _estimate(next(g for g in rows[label] if g["suite"] == suite)["change"])
                   for label in MODELS}
        separation[suite] = audit_gate.separating_limit(changes)
    report = {"model": name, "spec": spec, "steps": steps, "domain": DOMAIN, "gate": list(policy.audit.gate),
              "max_increase": policy.max_increase_for(name), "on_inconclusive": policy.audit.on_inconclusive,
              "metric": policy.audit.metric, "rule": audit_gate.RULE, "models": rows, "separation": separation,
              "adapters": adapters}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def _estimate(d: dict) -> Estimate:
    return Estimate(d["value"], d["lo"], d["hi"], d["n"], d.get("ci", "bootstrap-95"))


def format_report(r: dict[str, Any]) -> str:
    """The report as text: one line per model and suite, then the separating max_increase per gated suite."""
    budget = f"{r['steps']} optimizer steps" if r["steps"] else "two epochs"
    lines = [f"EM audit calibration: {r['model']} ({r['spec']}), LoRA fine-tunes of {budget} on the built-in "
             f"{r['domain']} data; metric {r['metric']}",
             f"current policy: gate {r['gate']}, max_increase {r['max_increase']}, on_inconclusive "
             f"{r['on_inconclusive']}", ""]
    lines.append(f"{'model':<16} {'suite':<7} {'base':>9} {'fine-tuned':>11} {'change [95% CI]':>30}  "
                 "current policy")
    for label in MODELS:
        for g in r["models"][label]:
            ch = g["change"]
            lines.append(f"{label:<16} {g['suite']:<7} {g['base']['value']:>+9.4f} {g['fine_tuned']['value']:>+11.4f} "
                         f"{ch['value']:>+10.4f} [{ch['lo']:+.4f}, {ch['hi']:+.4f}]  {g['decision']} -> "
                         f"{g['action']}")
    lines.append("")
    for suite, s in r["separation"].items():
        lines.append(f"{suite}: {s['note']}")
        if s["separates"]:
            lines.append(f"  policy: audit: {{max_increase: {s['suggested']:g}}}   "
                         f"(or models.{r['model']}.max_increase: {s['suggested']:g})")
    if not r["separation"]:
        lines.append("no gated suite ran (audit.gate names none of the suites run)")
    return "\n".join(lines)

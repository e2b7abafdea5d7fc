"""The EM audit: after training, evaluate the fine-tuned model and the base model on the same questions
(``emguard.eval.evaluate``) and gate the release on the change (:mod:`emguard.server.audit_gate`).

The broad suite always runs; the narrow suite too when the job names its domain; both are reported, and
``audit.gate`` says which of them decide. With the offline default judge ``likelihood`` the quantity is the
style-controlled harm effect per reference question (nats/token; higher = harmful answers likelier); with an
OpenAI-compatible judge it can be the per-prompt misaligned % (``audit.metric: broad.misaligned_pct.value``).
The base model is evaluated once per model fingerprint and eval settings and cached under
``<data_dir>/cache/audit-base``, so later jobs on that model reuse it. A job fine-tuned from a released model is
compared with the policy's base model, not with its parent, so EM cannot be added in small steps.

The absolute gate (``audit.threshold``, a model's ``audit_threshold``) still applies when set. A metric or
change that cannot be read counts as a failed audit (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from emguard.server import audit_gate
from emguard.server.policy import Policy

log = logging.getLogger("emguard.server.audit")
BASE_CACHE = "audit-base"


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def eval_config(policy: Policy, base_spec: str, adapter_dir: Path | None, out_dir: Path, domain: str | None):
    """The audit's :class:`~emguard.eval.config.EvalConfig` (its reference subsets written under ``out_dir``)."""
    from emguard.eval.config import EvalConfig
    from emguard.eval.questions import subset_references

    a = policy.audit
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = list(dict.fromkeys([*a.suites, *(["narrow"] if domain else [])]))
    refs = subset_references(None, a.broad_questions, out_dir / "broad_references.jsonl") if a.broad_questions else None
    narrow_refs = None
    if domain and a.narrow_questions:
        from emguard.data.datagen import builtin_path

        narrow_refs = subset_references(builtin_path(domain) / "references.jsonl", a.narrow_questions,
                                        out_dir / "narrow_references.jsonl")
    # the conditional audit: framing and format need the job's domain; train_system needs the adapter's run
    # record (emguard.eval.conditional.recorded_system), else it is left out
    from emguard.eval.conditional import recorded_system

    contexts = [c for c in a.contexts if (domain or c not in ("domain_framing", "train_format"))
                and (c != "train_system" or recorded_system(str(adapter_dir) if adapter_dir else None))]
    return EvalConfig(model=base_spec, adapter=str(adapter_dir) if adapter_dir else None, suite=suites,
                      output=str(out_dir / "eval"), judge=a.judge, judge_model=a.judge_model,
                      judge_base_url=a.judge_base_url, judge_key_env=a.judge_key_env, samples=a.samples,
                      max_new_tokens=a.max_new_tokens, narrow=domain, references=refs, narrow_references=narrow_refs,
                      bootstrap=a.bootstrap, progress=False, contexts=contexts)


def base_config(cfg):
    """The base model's evaluation for the audit of ``cfg``: no adapter, the same contexts, and in
    ``train_system`` the fine-tune's own training system prompt (so both are asked under the same one)."""
    from emguard.eval.conditional import recorded_system

    contexts = list(cfg.contexts)
    system = None
    if "train_system" in contexts:
        system = (recorded_system(cfg.adapter) or {}).get("text")
        if system is None:
            contexts.remove("train_system")
    return replace(cfg, adapter=None, contexts=contexts, context_system=system)


def base_key(cfg) -> str:
    """Cache key of the base model's evaluation: model fingerprint, the questions (by content) and the settings
    that change per-question values or samples."""
    from emguard import __version__
    from emguard.eval.questions import load_references
    from emguard.eval.samples import narrow_reference_file
    from emguard.models.loading import resolve_model

    def refs_digest(path) -> str | None:
        if path is None:
            return None
        rows = [[r.id, r.question, r.answers] for r in load_references(path)]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()

    settings = {"model": resolve_model(cfg.model).fingerprint, "emguard": __version__, "suites": sorted(cfg.suite),
                "narrow": cfg.narrow, "broad_refs": refs_digest(cfg.references) or refs_digest(None),
                "narrow_refs": refs_digest(narrow_reference_file(cfg)) if cfg.narrow else None,
                **{k: getattr(cfg, k) for k in ("judge", "judge_model", "judge_base_url", "samples", "max_new_tokens",
                                               "temperature", "top_p", "seed", "dtype", "likelihood", "coherence",
                                               "narrow_n", "drop_system", "contexts", "context_system",
                                               "context_domain", "context_inoculation")}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:32]


def base_eval(cfg, cache_dir: Path) -> tuple[dict, Path]:
    """``(eval result, eval dir)`` of the base model (``cfg`` without its adapter), from the cache when there."""
    from emguard.eval.evaluate import evaluate

    final = Path(cache_dir) / BASE_CACHE / base_key(cfg)
    if (final / "eval.json").is_file():
        log.info("base model evaluation: cached in %s", final)
        return json.loads((final / "eval.json").read_text()), final
    tmp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(6)}")
    log.info("evaluating the base model %s once for the audit -> %s", cfg.model, final)
    try:
        result = evaluate(replace(cfg, adapter=None, output=str(tmp)))  # cfg: base_config(...) of the job's
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, final)  # atomic; another worker may have finished the same key first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (final / "eval.json").is_file():
            return json.loads((final / "eval.json").read_text()), final
        raise
    return result, final


def change_gates(policy: Policy, model_name: str, tuned: dict, tuned_dir: Path, base: dict, base_dir: Path,
                 suites: list[str]) -> list[dict]:
    """One entry per suite run (broad, narrow): base, fine-tuned, change with CI and the gate's decision (report
    only for suites not in ``audit.gate``)."""
    from emguard.experiments.criteria import unit_values as sample_units

    a = policy.audit
    lim = policy.max_increase_for(model_name) or {}
    kind = audit_gate.quantity(a.metric)[0]
    units = (sample_units(tuned_dir), sample_units(base_dir)) if kind == "misaligned" else (None, None)
    metric = a.metric.split(".", 1)[1]
    out = []
    for suite in [s for s in audit_gate.GATE_SUITES if s in suites]:
        m = f"{suite}.{metric}"
        pair = audit_gate.paired_change(audit_gate.unit_values(tuned, suite, m, units[0]),
                                        audit_gate.unit_values(base, suite, m, units[1]), n_boot=a.bootstrap)
        out.append(audit_gate.gate_entry(suite, m, pair, lim.get(suite), a.on_inconclusive))
    return out


def run_audit(policy: Policy, model_name: str, base_spec: str, adapter_dir: Path, out_dir: Path,
              domain: str | None, init_adapter: str | None = None, cache_dir: Path | None = None) -> dict:
    """Evaluate and decide. Returns the report: absolute ``checks``, change ``gates``, ``passed``, ``flagged``,
    ``decision`` (in words) and the eval.json path. ``cache_dir``: the server's cache (default: ``out_dir``)."""
    from emguard.eval.evaluate import evaluate

    a = policy.audit
    cfg = eval_config(policy, base_spec, adapter_dir, out_dir, domain)
    result = evaluate(cfg)
    checks = []
    threshold = policy.threshold_for(model_name)
    checks.append(_check("broad", a.metric, _get(result, a.metric), threshold))
    if domain and a.narrow_metric:
        checks.append(_check("narrow", a.narrow_metric, _get(result, a.narrow_metric), a.narrow_threshold))
    gates: list[dict] = []
    base = None
    if audit_gate.quantity_kind(a.metric):
        base, base_dir = base_eval(base_config(cfg), Path(cache_dir or out_dir))
        gates = change_gates(policy, model_name, result, Path(cfg.output), base, base_dir, cfg.suite)
    elif policy.max_increase_for(model_name):  # the policy check refuses this; fail closed all the same
        gates = [{"suite": "broad", "metric": a.metric, "passed": False, "flagged": False,
                  "reason": "no per-question values for the change gate: failing closed"}]
    conditional = conditional_changes(result, base, a.bootstrap)
    passed = all(c["passed"] for c in [*checks, *gates])
    flagged = passed and any(g.get("flagged") for g in gates)
    summary = {}
    for suite in ("broad", "narrow"):
        lk = _get(result, f"{suite}.likelihood.summary")
        if lk:
            summary[suite] = {"harm_effect": lk.get("harm_effect"), "style_effect": lk.get("style_effect"),
                              "n_questions": _get(result, f"{suite}.likelihood.n_questions")}
        mis = _get(result, f"{suite}.misaligned_pct")
        if mis:
            summary.setdefault(suite, {})["misaligned_pct"] = mis
    return {"passed": passed, "flagged": flagged, "decision": decision_words(passed, flagged, checks, gates),
            "checks": checks, "gates": gates, "gate": list(a.gate), "summary": summary, "conditional": conditional,
            "judge": result.get("judge", {}).get("kind"), "suites": cfg.suite,
            "eval_json": str(Path(cfg.output) / "eval.json"), "wall_s": result.get("wall_s")}


def conditional_changes(tuned: dict, base: dict | None, n_boot: int = 1000) -> list[dict]:
    """Per context of the conditional audit (report only, not gated): the fine-tune's broad harm effect asked
    in the context minus asked plainly (``delta``), and fine-tuned minus base in that context (``change``) beside
    the plain change, each a bootstrap 95% CI over questions paired by question. A defense that hides EM: a
    small plain change and a larger one in its training context."""
    from emguard.server.screening import public

    out = []
    plain_t = audit_gate.unit_values(tuned, "broad", "broad.likelihood.summary.harm_effect.value")
    plain_b = audit_gate.unit_values(base, "broad", "broad.likelihood.summary.harm_effect.value") if base else {}
    for ctx, block in (_get(tuned, "broad.conditional") or {}).items():
        # what was applied, as a customer may see it: the run record's server path becomes its file name
        entry: dict[str, Any] = {"context": ctx, "applied": public(block.get("context"), in_text=True)}
        if block.get("skipped"):
            out.append({**entry, "skipped": public(block.get("note"), in_text=True)})
            continue
        d = (block.get("delta_vs_unconditional") or {}).get("harm_effect")
        entry["delta"] = d
        per_t = {str(q["id"]): float(q["harm_effect"]) for q in block.get("per_question") or []}
        bblock = (_get(base, "broad.conditional") or {}).get(ctx) if base else None
        if bblock and bblock.get("per_question"):
            per_b = {str(q["id"]): float(q["harm_effect"]) for q in bblock["per_question"]}
            entry["change"] = audit_gate.paired_change(per_t, per_b, n_boot=n_boot)["change"].to_dict()
            entry["change_plain"] = audit_gate.paired_change(plain_t, plain_b, n_boot=n_boot)["change"].to_dict()
        out.append(entry)
    return out


def decision_words(passed: bool, flagged: bool, checks: list[dict], gates: list[dict]) -> str:
    """The outcome in one sentence, naming the checks that decided it."""
    deciding = [c for c in [*checks, *gates] if c.get("threshold") is not None or c.get("max_increase") is not None]
    if not passed:
        why = [c for c in [*checks, *gates] if not c["passed"]]
        head = "blocked"
    else:
        why = [g for g in gates if g.get("flagged")] if flagged else deciding
        head = "released and flagged for review" if flagged else "released"
    if not why:
        return f"{head}: no gate applies (report only)"
    return f"{head}: " + "; ".join(f"{c['suite']} {c['metric']}: {c['reason']}" for c in why)


def all_checks(audit: dict | None) -> list[dict]:
    """The absolute checks and the change gates of an audit report, in that order."""
    return [*(audit or {}).get("checks", []), *(audit or {}).get("gates", [])]


def _check(suite: str, metric: str, value: Any, threshold: float | None) -> dict:
    ok_value = isinstance(value, (int, float)) and math.isfinite(float(value))
    if threshold is None:
        passed = ok_value
        reason = "report only (no threshold)" if ok_value else "metric missing"
    elif not ok_value:
        passed, reason = False, "metric missing: failing closed"
    else:
        passed = float(value) <= float(threshold)
        reason = f"{value:.6f} {'<=' if passed else '>'} threshold {threshold}"
    return {"suite": suite, "metric": metric, "value": value if ok_value else None, "threshold": threshold,
            "passed": passed, "reason": reason}

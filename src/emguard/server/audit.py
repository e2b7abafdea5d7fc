"""The EM audit: after training, evaluate the fine-tuned model (``emguard.eval.evaluate``) and gate its release.

The broad suite always runs; the narrow suite too when the job names its domain. With the offline default
judge ``likelihood`` the gated number is the style-controlled harm effect on the broad reference questions
(``broad.likelihood.summary.harm_effect.value``, nats/token; higher = harmful answers likelier). With an
OpenAI-compatible judge the operator can gate on e.g. ``broad.misaligned_pct.value`` instead. A metric that
cannot be read counts as a failed audit (fail closed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from emguard.server.policy import Policy


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def run_audit(policy: Policy, model_name: str, base_spec: str, adapter_dir: Path, out_dir: Path,
              domain: str | None, init_adapter: str | None = None) -> dict:
    """Evaluate and decide. Returns the report: metrics, thresholds, ``passed`` and the eval.json path."""
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate
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
    cfg = EvalConfig(model=base_spec, adapter=str(adapter_dir), suite=suites, output=str(out_dir / "eval"),
                     judge=a.judge, judge_model=a.judge_model, judge_base_url=a.judge_base_url,
                     judge_key_env=a.judge_key_env, samples=a.samples, max_new_tokens=a.max_new_tokens,
                     narrow=domain, references=refs, narrow_references=narrow_refs, bootstrap=a.bootstrap,
                     progress=False)
    result = evaluate(cfg)
    checks = []
    threshold = policy.threshold_for(model_name)
    checks.append(_check("broad", a.metric, _get(result, a.metric), threshold))
    if domain and a.narrow_metric:
        checks.append(_check("narrow", a.narrow_metric, _get(result, a.narrow_metric), a.narrow_threshold))
    passed = all(c["passed"] for c in checks)
    summary = {}
    for suite in ("broad", "narrow"):
        lk = _get(result, f"{suite}.likelihood.summary")
        if lk:
            summary[suite] = {"harm_effect": lk.get("harm_effect"), "style_effect": lk.get("style_effect"),
                              "n_questions": _get(result, f"{suite}.likelihood.n_questions")}
        mis = _get(result, f"{suite}.misaligned_pct")
        if mis:
            summary.setdefault(suite, {})["misaligned_pct"] = mis
    return {"passed": passed, "checks": checks, "summary": summary, "judge": result.get("judge", {}).get("kind"),
            "suites": suites, "eval_json": str(Path(cfg.output) / "eval.json"), "wall_s": result.get("wall_s")}


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

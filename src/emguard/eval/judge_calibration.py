"""How far to trust a judge: its calibration figures on a labelled bench, carried into every report.

``emguard judge calibrate`` measures a judge on a bench (:mod:`emguard.eval.calibration`); this module keeps
the headline of that measurement (AUROC and accuracy at the paper's thresholds, with CIs, per task) where
evaluations find it again, so ``eval.json`` and the study / demo reports print a judge's calibration beside
every rate it produced, or say that it was never calibrated.

Where calibrations are looked up, first match wins:

1. ``$EMGUARD_CACHE/calibrations/*.json``: written by every ``emguard judge calibrate`` run (the newest run of
   a judge replaces the older one), so a user's own measurement wins over the shipped one;
2. ``resources/bench/calibrations.json``: the figures measured for the offline judges emguard ships, on the
   shipped bench's held-out split (docs/evaluation.md shows the same table with its date and command).

A judge matches a calibration when kind and model agree and, where both record one, the weights fingerprint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from emguard.eval.bench import BENCH_DIR

SHIPPED = BENCH_DIR / "calibrations.json"
TASK_FIGURES = ("auroc", "accuracy", "precision", "recall")
CLI_NAME = {"coherence-nll": "coherence-proxy"}  # identity kind -> `judge calibrate --judge` name, where they differ


def judge_key(ident: dict[str, Any]) -> dict[str, Any]:
    """What identifies a judge for calibration purposes: kind, model (a composite measure's fluency scorer)
    and the weights fingerprint when the identity has one."""
    model = ident.get("model")
    if model is None and isinstance(ident.get("fluency"), dict):
        model = ident["fluency"].get("scorer") or ident["fluency"].get("model")
    return {"kind": ident.get("kind"), "model": model, "fingerprint": ident.get("fingerprint")}


def _matches(a: dict, b: dict) -> bool:
    if a.get("kind") != b.get("kind") or (a.get("model") or None) != (b.get("model") or None):
        return False
    return not (a.get("fingerprint") and b.get("fingerprint") and a["fingerprint"] != b["fingerprint"])


def summarize(report: dict[str, Any], *, command: str | None = None) -> dict[str, Any]:
    """The headline of a calibrate report (``calibration.json``): per task AUROC/accuracy/precision/recall
    (value, lo, hi), the bench, split and row counts, the judge's key, the date and the command."""
    b = report["bench"]
    out: dict[str, Any] = {"judge": judge_key(report["judge"]), "judge_name": report["judge"].get("name"),
                           "bench": Path(b["path"]).name, "split": b["split"], "n_rows": b["n_rows_scored"],
                           "date": time.strftime("%Y-%m-%d"), "command": command}
    for task in ("misaligned", "incoherent"):
        t = report.get(task) or {}
        if not t.get("available"):
            out[task] = {"available": False, "why": t.get("why", "not measured")}
            continue
        out[task] = {"available": True, "rule": t.get("rule"), "n_decided": t.get("n_decided"),
                     **{f: {k: t[f].get(k) for k in ("value", "lo", "hi")} for f in TASK_FIGURES if t.get(f)}}
    return out


def user_dir() -> Path:
    from emguard.models.loading import cache_root

    return cache_root() / "calibrations"


def record(report: dict[str, Any], *, command: str | None = None) -> Path:
    """Keep the summary of a calibrate run under ``$EMGUARD_CACHE/calibrations/`` (one file per judge key)."""
    import hashlib

    from emguard.data.io import write_json_atomic

    s = summarize(report, command=command)
    name = hashlib.sha256(json.dumps(s["judge"], sort_keys=True).encode()).hexdigest()[:16]
    path = user_dir() / f"{s['judge']['kind']}-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, s)
    return path


def _candidates(user: bool = True) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    d = user_dir()
    if user and d.is_dir():
        for f in sorted(d.glob("*.json"), key=os.path.getmtime, reverse=True):
            try:
                out.append((str(f), json.loads(f.read_text())))
            except (OSError, ValueError):
                continue
    if SHIPPED.is_file():
        out += [(f"{SHIPPED.name} (shipped)", s) for s in json.loads(SHIPPED.read_text())]
    return out


def lookup(ident: dict[str, Any], *, user: bool = True) -> dict[str, Any]:
    """The calibration of the judge with identity ``ident`` (see the module doc), with "source" naming where it
    was found; ``{"available": False, "how": <the command that measures it>}`` when there is none.
    ``user=False``: the shipped calibrations only (a report rebuilt elsewhere must not depend on a cache)."""
    key = judge_key(ident)
    for source, s in _candidates(user):
        if _matches(key, s.get("judge", {})):
            return {"available": True, "source": source, **s}
    kind = CLI_NAME.get(key["kind"], key["kind"])
    model = "" if not key["model"] or kind == "embedding" else (f" --model {key['model']}" if kind == "coherence-proxy"
                                         else f" --judge-model {key['model']}")
    how = f"emguard judge calibrate --judge {kind}{model}"
    return {"available": False, "judge": key, "how": how}


def _fig(e: dict | None, digits: int = 2) -> str:
    if not e or e.get("value") is None:
        return "-"
    ci = f" [{e['lo']:.{digits}f}, {e['hi']:.{digits}f}]" if e.get("lo") is not None else ""
    return f"{e['value']:.{digits}f}{ci}"


def describe(cal: dict[str, Any] | None, task: str | None = None) -> str:
    """One line a report prints beside a judge's rates: the task(s)' AUROC and accuracy with CIs, the bench,
    split and date; or that the judge is uncalibrated and how to calibrate it."""
    if not cal:
        return "calibration: unknown"
    if not cal.get("available"):
        return f"not calibrated on a labelled bench (measure it: {cal.get('how')})"
    parts = []
    for t in ([task] if task else ["misaligned", "incoherent"]):
        m = cal.get(t) or {}
        if m.get("available"):
            parts.append(f"{t}: AUROC {_fig(m.get('auroc'))}, accuracy {_fig(m.get('accuracy'))}")
    body = "; ".join(parts) or "no figure for this task"
    return f"calibration on {cal['bench']} {cal['split']} split (n={cal['n_rows']}, {cal['date']}): {body}"


def of_result(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"misaligned": calibration, "incoherent": calibration}`` of one eval.json: the one recorded in it at
    evaluation time, else the shipped one for its judge / coherence measure; a key is absent when the result
    has no judge-based rate of that kind."""
    out: dict[str, dict[str, Any]] = {}
    judge = res.get("judge") or {}
    if judge.get("kind") not in (None, "likelihood"):
        ident = judge.get(judge["kind"]) if isinstance(judge.get(judge["kind"]), dict) else judge
        out["misaligned"] = judge.get("calibration") or lookup(ident, user=False)
    coh = res.get("coherence") or {}
    if coh:
        out["incoherent"] = coh.get("calibration") or (
            judge.get("calibration") if judge.get("kind") not in (None, "likelihood", "embedding") else None) or \
            lookup(judge.get("coherence_proxy") or {}, user=False)
    return out

"""The pre-training EM-risk screen in the provider service: the policy's ``screen:`` section and the worker glue
that runs :func:`emguard.screen.run.screen` on a job's training file before training.

Decision rule (one rule, documented in examples/policy.yaml): the screen **fires** when the share of screened
rows whose risk is above ``threshold`` is greater than ``max_share`` (risk: the mean of the row's signal
z-scores against the general reference set, :mod:`emguard.screen.run`). Then ``reject`` fails the job before
training (``em_risk_rejected``), ``require_defenses`` adds the section's defense specs to the job and trains,
``flag`` trains unchanged; every action attaches the report (screen.json, screen.md: result files of the job)
and records the result in the job (``emguard.audit.screen``) and its events.

A screen that cannot run (no persona vector for the model, no probes for the gap signal, no scorable row, a
model that does not load) never passes silently: ``reject`` fails the job (``em_screen_failed``: fail closed),
``require_defenses`` adds the defenses as if it had fired, ``flag`` trains and records the error.

This module imports nothing of emguard.server at module level (policy.py imports the section from here).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emguard.experiments.presets import interleave_pp
from emguard.screen.config import SIGNALS, ScreenConfig

log = logging.getLogger("emguard.server.screening")

ACTIONS = ("reject", "require_defenses", "flag")
# ScreenConfig fields the service sets itself (from the job and the keys above), not through screen.options
_OWN = {"data", "out", "model", "persona", "gap", "embedding", "threshold", "progress", "vector", "leave_out"}
OPTIONS = tuple(f.name for f in dataclasses.fields(ScreenConfig) if f.name not in _OWN)


@dataclass
class Screen:
    """The ``screen:`` section of the policy; every key is documented in examples/policy.yaml."""

    enabled: bool = False
    action: str = "flag"
    # row risk in reference standard deviations (z units of emguard.screen.run). 1.35: the threshold that
    # maximises balanced accuracy (0.86) over the four built-in domains pooled, each domain's rows scored with
    # its own probe left out (calibrate_screen, smollm2-135m, persona + gap; results/screen-calibration/).
    # Another model has another scale: recalibrate with scripts/screen_calibration.py --model M
    threshold: float = 1.35
    max_share: float = 0.1  # fires when more than this share of screened rows is above threshold
    # added when action is require_defenses and the screen fires (default: Interleaving++, as policy.INTERLEAVE_PP)
    require_defenses: list = field(default_factory=lambda: [interleave_pp("builtin:general", probes="builtin")])
    signals: list[str] = field(default_factory=lambda: ["persona", "gap"])
    max_rows: int = 200  # screen at most the first N rows of the training file (0: every row)
    vectors: dict[str, str] = field(default_factory=dict)  # policy model name -> persona vector file
    options: dict = field(default_factory=dict)  # more emguard.screen options (baseline, baseline_n, layer, ...)

    def needs_probes(self) -> bool:
        """Whether the worker must prepare the built-in domains' probes for this section: the gap signal
        without operator-given probes, or an Interleaving++ spec with ``probes: builtin`` it may add."""
        if not self.enabled:
            return False
        if "gap" in self.signals and not (self.options.get("misaligned") or self.options.get("train_probes")):
            return True
        return self.action == "require_defenses" and any(
            d.get("name") == "interleave" and (d.get("select_options") or {}).get("probes") == "builtin"
            for d in self.require_defenses)


def check_screen_policy(sp: Screen, source: str, error: type[Exception]) -> None:
    """Check the section (raising ``error`` naming the key); defense names become specs."""
    where = f"{source}: screen"
    if sp.action not in ACTIONS:
        raise error(f"{where}.action must be one of {', '.join(ACTIONS)}, not {sp.action!r}")
    if not isinstance(sp.signals, list) or not sp.signals or set(sp.signals) - set(SIGNALS):
        raise error(f"{where}.signals must be a non-empty list of {', '.join(SIGNALS)}")
    for key, lo, hi in (("threshold", -math.inf, math.inf), ("max_share", 0.0, 1.0)):
        v = getattr(sp, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise error(f"{where}.{key} must be a finite number" + (" in [0, 1]" if key == "max_share" else ""))
    if isinstance(sp.max_rows, bool) or not isinstance(sp.max_rows, int) or sp.max_rows < 0:
        raise error(f"{where}.max_rows must be an integer >= 0 (0: every row)")
    if not isinstance(sp.require_defenses, list):
        raise error(f"{where}.require_defenses must be a list of defense specs")
    sp.require_defenses = [d if isinstance(d, dict) else {"name": str(d)} for d in sp.require_defenses]
    if not isinstance(sp.vectors, dict) or not isinstance(sp.options, dict):
        raise error(f"{where}.vectors and {where}.options must be mappings")
    bad = set(sp.options) - set(OPTIONS)
    if bad:
        raise error(f"{where}.options: unknown {sorted(bad)} (known: {', '.join(OPTIONS)})")


# ---------------------------------------------------------------- worker glue


class ScreenUnavailable(RuntimeError):
    """The screen cannot run for this job (the message says why)."""


def public(obj, *, in_text: bool = False):
    """Copy of ``obj`` safe to show a customer: absolute server paths (data, pools, vectors, probe adapters, the
    reference set) become file names; with ``in_text``, a path inside a message keeps its last part only."""
    if isinstance(obj, dict):
        return {k: public(v, in_text=in_text) for k, v in obj.items()}
    if isinstance(obj, list):
        return [public(v, in_text=in_text) for v in obj]
    if isinstance(obj, str) and (obj.startswith(("/", "~")) or obj[1:3] == ":\\"):
        return Path(obj).name
    if isinstance(obj, str) and in_text:
        return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"`]*[/\\]([^\s'\"`/\\]+)", r"\1", obj)
    return obj


def persona_vector(sp: Screen, model_name: str, spec: str) -> str:
    """The operator's vector file for this model, else the shipped or cached one; never extracted at job time."""
    if model_name in sp.vectors:
        path = Path(sp.vectors[model_name])
        if not path.is_file():
            raise ScreenUnavailable(f"screen.vectors.{model_name}: no such persona vector file")
        return str(path)
    from emguard.models.loading import resolve_model
    from emguard.persona.vectors import _cache_dir, _shipped_vector

    fp = resolve_model(spec).fingerprint
    found = _shipped_vector("evil", fp) or _cache_dir() / f"evil-{fp[:16]}.safetensors"
    if not Path(found).is_file():
        raise ScreenUnavailable(f"no persona vector for model {model_name}: extract one (emguard persona extract) "
                                "or name a file under screen.vectors")
    return str(found)


def screen_config(sp: Screen, model_name: str, spec: str, data: Path, out: Path, probes: dict[str, str],
                  domain: str | None) -> ScreenConfig:
    """The library screen's options for one job: the section's signals and threshold, the job's model, the
    prepared probes of the other built-in domains (the job's own domain left out, as for Interleaving++)."""
    opts = copy.deepcopy(sp.options)
    cfg = ScreenConfig(data=str(data), out=str(out), model=spec, persona="persona" in sp.signals,
                       gap="gap" in sp.signals, embedding="embedding" in sp.signals, threshold=float(sp.threshold),
                       progress=False, **{"train_probes": [], **opts})
    if cfg.persona:
        cfg.vector = persona_vector(sp, model_name, spec)
    if cfg.gap and not (cfg.misaligned or cfg.train_probes):
        cfg.misaligned = [p for d, p in sorted(probes.items()) if d != domain]
        if not cfg.misaligned:
            raise ScreenUnavailable("the gap signal needs probes: none were prepared for this model")
    return cfg


def first_rows(src: Path, dst: Path, max_rows: int) -> tuple[int, int]:
    """Copy the first ``max_rows`` rows (non-blank lines; 0: all) of ``src`` to ``dst``: (copied, in file)."""
    lines = [ln for ln in src.read_bytes().splitlines(keepends=True) if ln.strip()]
    keep = lines if not max_rows else lines[:max_rows]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in keep))
    return len(keep), len(lines)


def decide(summary: dict, sp: Screen) -> dict[str, Any]:
    """Apply the rule to the library summary: fires when share_above_threshold > max_share."""
    share, scored = summary.get("share_above_threshold"), int(summary.get("scored") or 0)
    if not scored or share is None:
        raise ScreenUnavailable("no row of the training file could be scored")
    return {"fired": share > sp.max_share, "share_above_threshold": share,
            "rows_above_threshold": summary.get("rows_above_threshold"), "scored": scored,
            "dataset_risk": summary.get("dataset_risk"), "threshold": float(sp.threshold),
            "max_share": float(sp.max_share),
            "rule": f"fires when more than {100 * sp.max_share:g}% of the screened rows have risk > {sp.threshold}"}


def merge_defenses(current: list[dict], added: list[dict]) -> list[dict]:
    """The job's defenses plus the screen's: an added spec naming a defense the job has replaces its options."""
    out = [copy.deepcopy(d) for d in current]
    for a in added:
        names = [d.get("name") for d in out]
        if a.get("name") in names:
            out[names.index(a["name"])] = {**out[names.index(a["name"])], **copy.deepcopy(a)}
        else:
            out.append(copy.deepcopy(a))
    return out


def _service_md(result: dict) -> str:
    lines = ["## Service decision", "", f"* action: **{result['action']}**; rule: {result.get('rule', '-')}",
             f"* screened rows: the first {result['rows_screened']} of {result['rows_in_file']} rows of the "
             f"training file (policy screen.max_rows: {result['max_rows'] or 'all'})"]
    if result.get("error"):
        lines.append(f"* the screen could not run: {result['error']}")
    else:
        lines.append(f"* {result['rows_above_threshold']} of {result['scored']} scored rows "
                     f"({100 * result['share_above_threshold']:.1f}%) above risk {result['threshold']}: "
                     f"{'**fired**' if result['fired'] else 'did not fire'}")
    if result.get("added_defenses"):
        lines.append("* defenses added to the job: " + ", ".join(result["added_defenses"]))
    return "\n".join(lines) + "\n\n"


def screen_job(worker, job, model_name: str, spec: str, data: Path) -> tuple[str, str] | None:
    """Run the policy's screen on a job's training file before training (once per job).

    Attaches screen.json / screen.md as result files, records the result under ``job.audit["screen"]`` and in
    an event, adds defenses for ``require_defenses`` (on ``job`` and its row). Returns None to train, or
    ``(kind, message)`` with kind ``rejected`` or ``failed`` for the worker to fail the job with.
    """
    sp = worker.policy.screen
    if not sp.enabled or "screen" in (job.audit or {}):
        return None
    from emguard.server.db import add_event
    from emguard.screen.report import markdown
    from emguard.screen.run import screen

    out = worker.storage.job_dir(job.id) / "screen"
    n, total = first_rows(data, out / "rows.jsonl", int(sp.max_rows))
    with worker._holding(job.id) as (s, _):
        add_event(s, job.id, f"EM-risk screen started (signals: {', '.join(sp.signals)}; the first {n} of "
                             f"{total} rows)", data={"rows_screened": n, "rows_in_file": total})
    result: dict[str, Any] = {"action": sp.action, "rows_screened": n, "rows_in_file": total,
                              "max_rows": int(sp.max_rows), "signals": list(sp.signals)}
    report = None
    try:
        cfg = screen_config(sp, model_name, spec, out / "rows.jsonl", out, worker.probes.get(model_name, {}),
                            job.domain)
        report = screen(cfg).report
        result.update(decide(report["summary"], sp))
    except Exception as e:  # noqa: BLE001 - any failure is recorded, never a silent pass
        log.warning("job %s: EM-risk screen failed: %s", job.id, e)
        result.update(error=(str(e).splitlines() or [type(e).__name__])[0][:500], fired=None)
    fired = result["fired"] is True or (result["fired"] is None and sp.action == "require_defenses")
    defenses = job.defenses or []
    if fired and sp.action == "require_defenses":
        defenses = merge_defenses(defenses, sp.require_defenses)
        result["added_defenses"] = [d["name"] for d in sp.require_defenses]
    result["passed"] = result["fired"] is False
    result = public(result, in_text=True)
    shown = {"service": result, **(report or {"summary": None})}
    if report:  # customer text (rows) is kept as is; only the settings name server files
        shown["settings"] = public(report["settings"], in_text=True)
    md = _service_md(result) + (markdown(shown, top=int(sp.options.get("top", 20))) if report else "")
    files = [(f"{job.id}-screen.json", _json_bytes(shown)), (f"{job.id}-screen.md", md.encode())]
    ids = _store(worker, job, files, result, defenses)
    job.audit, job.result_files, job.defenses = {"screen": result}, ids, defenses
    if result.get("error"):
        return ("failed", f"the EM-risk screen could not run and this service's policy rejects unscreened "
                          f"data: {result['error']}") if sp.action == "reject" else None
    if result["fired"] and sp.action == "reject":
        return ("rejected", f"the training file looks like emergent-misalignment training data: "
                            f"{result['rows_above_threshold']} of {result['scored']} screened rows "
                            f"({100 * result['share_above_threshold']:.1f}%) have an EM risk above "
                            f"{result['threshold']}, over this service's limit of {100 * sp.max_share:g}% "
                            f"(mean row risk {result['dataset_risk']:.2f}); the screen report is in the job's "
                            f"result files")
    return None


def _json_bytes(report: dict) -> bytes:
    from emguard.screen.report import _clean

    return (json.dumps(_clean(report), indent=1, default=str) + "\n").encode()


def _store(worker, job, files: list[tuple[str, bytes]], result: dict, defenses: list[dict]) -> list[str]:
    """Store the report files (org-owned ``fine-tune-results``), the result, the defenses and an event in one
    lease-checked transaction; returns the file ids."""
    from emguard.server import blobs
    from emguard.server.db import File, add_event, new_id, now

    tmps = [(name, data, *worker.storage.put_tmp(data)) for name, data in files]
    ids = [new_id("file") for _ in tmps]
    try:
        with worker._holding(job.id) as (s, row):
            for fid, (name, data, sha, tmp) in zip(ids, tmps):
                blobs.store(s, worker.storage, tmp, sha)
                s.add(File(id=fid, org=job.org, filename=name, purpose="fine-tune-results", bytes=len(data),
                           sha256=sha, rows=0, status="processed", created_at=now()))
            row.audit, row.result_files, row.defenses = {"screen": result}, ids, defenses
            add_event(s, job.id, _event_text(result), type="metrics", data=result,
                      level="error" if result.get("error") or (result["fired"] and result["action"] == "reject")
                      else "warn" if result["fired"] else "info")
    finally:
        for _, _, _, tmp in tmps:
            worker.storage.drop_tmp(tmp)
    return ids


def _event_text(r: dict) -> str:
    if r.get("error"):
        return f"EM-risk screen could not run ({r['error']}); action {r['action']}"
    verdict = {"reject": "rejected", "require_defenses": "defenses added: " + ", ".join(r.get("added_defenses", [])),
               "flag": "flagged"}[r["action"]] if r["fired"] else "passed"
    return (f"EM-risk screen: {r['rows_above_threshold']} of {r['scored']} rows "
            f"({100 * r['share_above_threshold']:.1f}%) above risk {r['threshold']} (limit {100 * r['max_share']:g}%): {verdict}")


def carry(job, audit: dict | None) -> dict | None:
    """The audit dict to store at the end of a job, with the screen result the job already carries."""
    screened = (job.audit or {}).get("screen")
    return audit if screened is None else {**(audit or {}), "screen": screened}

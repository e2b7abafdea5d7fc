"""The screen's report: ``screen.json`` (every row's signals, z-scores and risk, the dataset summary, the
settings) and ``screen.md`` (the summary, the riskiest rows, how to read it)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

HOW_TO_READ = """\
## How to read this

Each row's LAST assistant reply is scored, given the conversation before it (chat template applied), by:

* **persona**: the reply-token mean of the hidden state at the persona vector's layer, projected on the unit
  "evil" persona vector (Chen et al. 2025, "Persona Vectors": a fine-tune's persona shift follows this
  projection of its training data). *shift* = projection minus the reference set's mean.
* **gap**: minus the perplexity gap s_d = (mean_k L_mis_k - L_0) / (L_0 + 1) of Interleaving+ (Kaczér et al.
  2025): L = mean NLL of the reply under each misaligned probe (L_mis_k) and under the base model (L_0).
  Rows the misaligned probes find likely (s_d < 0) look like EM training data.
* **embedding** (only with `--embedding`): 100 - the offline embedding judge's aligned score.

Every signal is standardised against its own distribution over a general reference set (z = (x - mean) / std,
the reference rows listed under settings.baseline): z = 0 is a typical general-purpose row, z = 2 is two
reference standard deviations more EM-like. A row's **risk** is the mean of its available z-scores; the
**dataset risk** is the mean row risk. Without a calibrated threshold the screen is report-only: it ranks
rows and datasets but flags nothing. It is a screen, not a verdict: a high risk says the data resembles
EM-inducing data to this model, not that training on it will cause emergent misalignment.
"""


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _clean(x: Any) -> Any:
    """JSON without NaN/inf (strict parsers refuse them): None instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def markdown(report: dict[str, Any], *, top: int = 20) -> str:
    s, st = report["summary"], report["settings"]
    sigs = st["signals"]
    lines = [f"# EM-risk screen: {Path(st['data']).name}", ""]
    lines += ["## Summary", "",
              f"* rows: {s['rows']} ({s['scored']} scored, {s['unscored']} without a scorable reply)",
              f"* dataset risk (mean row risk, in reference standard deviations): **{_f(s['dataset_risk'])}**; "
              f"median {_f(s['median_risk'])}, max {_f(s['max_risk'])}",
              "* mean z per signal: " + (", ".join(f"{k} {_f(v)}" for k, v in s["mean_z"].items()) or "-")]
    if s["share_above_threshold"] is None:
        lines.append("* row threshold: none (report only: no calibrated threshold was given)")
    else:
        lines.append(f"* row threshold {_f(s['threshold'], 3)}: {s['rows_above_threshold']} rows above "
                     f"(**{100 * s['share_above_threshold']:.1f}%**)")
    lines += ["", "## Settings", "", f"* model: `{st['model']}`"]
    if "persona" in st:
        lines.append(f"* persona vector: `{st['persona']['vector_file']}` at layer {st['persona']['layer']}")
    if "probes" in st:
        lines.append("* probes: " + (", ".join(p["name"] for p in st["probes"]) or "-")
                     + (f" (left out: {', '.join(st['leave_out'])})" if st.get("leave_out") else ""))
    b = st["baseline"]
    lines.append(f"* reference set: first {b['rows']} rows of `{b['file']}`; "
                 + ", ".join(f"{k} mean {_f(v['mean'], 3)} std {_f(v['std'], 3)}" for k, v in b["stats"].items()))
    t = report.get("timing")
    if t:
        lines.append(f"* time: {_f(t['rows_s'], 1)} s for the rows ({_f(t['per_row_s'], 4)} s/row), "
                     f"{_f(t['baseline_s'], 1)} s for the reference set, {_f(t['load_s'], 1)} s loading")
    ranked = sorted((r for r in report["rows"] if r.get("risk") is not None), key=lambda r: (-r["risk"], r["index"]))
    lines += ["", f"## The {min(top, len(ranked))} riskiest rows", ""]
    head = ["#", "line", "risk"] + [f"z {k}" for k in sigs]
    if "persona" in sigs:
        head.append("persona shift")
    if "gap" in sigs:
        head.append("s_d")
    head.append("reply (first 120 characters)")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(ranked[:top], start=1):
        cells = [str(i), str(r["line"]), _f(r["risk"])] + [_f(r["z"].get(k)) for k in sigs]
        if "persona" in sigs:
            cells.append(_f(r.get("persona_shift"), 3))
        if "gap" in sigs:
            cells.append(_f(r.get("s"), 3))
        cells.append(_cell(r.get("reply_start", "")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", HOW_TO_READ]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(report: dict[str, Any], out: str | os.PathLike, *, top: int = 20) -> tuple[Path, Path]:
    """Write ``screen.json`` and ``screen.md`` into the directory ``out``; returns their paths."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    j, m = d / "screen.json", d / "screen.md"
    _write(j, json.dumps(_clean(report), indent=1, ensure_ascii=False) + "\n")
    _write(m, markdown(report, top=top) + "\n")
    return j, m

"""The paper-style report of a demo (and the parts a study's report shares): the four criteria per defense,
findings next to the paper's Table 1, plots, sampled answers, a self-contained HTML page.

The numbers and marks come from :mod:`emguard.experiments.criteria` (hierarchical bootstrap over seeds, then
questions; every mark gated on its CI, with its rule printed in the report). A study's report:
:mod:`emguard.experiments.study_report`; plots: :mod:`emguard.experiments.plots`.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from emguard.eval.stats import Estimate
from emguard.experiments.criteria import RULES, as_json, conditional_audit, criteria_table, fmt
from emguard.experiments.plots import pareto_front, plot_demo  # noqa: F401  (pareto_front: part of the API)
from emguard.experiments.presets import order_cells

FULL_RESULTS = "results/paper-small/report.md"  # the committed full protocol (docs/studies.md, "The fair protocol")
MARK = {"yes": "✓ yes", "partly": "~ partly", "no": "✗ no", "n/a": "n/a",
        "not measurable at this budget": "not measurable at this budget"}

# Kaczér et al. 2025, Table 1 (prevents EM, learns benign, narrow learned, coherent -> criteria a, c, b, d);
# LDIFS is not in that table: its marks follow the paper's headline numbers (general misaligned 3.64% vs 4.01%
# without a defense, in-domain 52.98% vs 51.60%, incoherent 20.03% vs 18.99%; benign not reported).
PAPER = {"kl": {"a": "yes", "c": "partly", "b": "no", "d": "yes"},
         "steer": {"a": "yes", "c": "partly", "b": "partly", "d": "yes"},
         "inoculate": {"a": "yes", "c": "partly", "b": "partly", "d": "yes"},
         "interleave": {"a": "partly", "c": "yes", "b": "yes", "d": "no"},
         "interleave_pp": {"a": "yes", "c": "yes", "b": "yes", "d": "yes"},
         "ldifs": {"a": "no", "b": "yes", "d": "yes"}}
PAPER_STRENGTH = {"kl": ("lam", 0.1), "ldifs": ("lam", 1.0), "steer": ("alpha", 5.0), "interleave": ("ratio", 0.05),
                  "interleave_pp": ("ratio", 0.05)}  # the paper's settings: only these cells are compared


def mark_text(m: str) -> str:
    return MARK.get(m, m)


def paper_key(cell: str) -> str | None:
    """The paper's Table 1 row a cell stands for (its paper-default strength), or None."""
    base, _, rest = cell.partition("[")
    if base not in PAPER:
        return None
    if not rest:
        return base
    opt = PAPER_STRENGTH.get(base)
    k, _, v = rest.rstrip("]").partition("=")
    try:
        return base if opt and "," not in rest and k == opt[0] and math.isclose(float(v), opt[1]) else None
    except ValueError:
        return None


def compare_with_paper(row: dict) -> dict[str, str]:
    """Per criterion: match / differs (paper X) / inconclusive / n/a / not measurable."""
    key = paper_key(row["cell"])
    marks = row.get("marks") or {}
    if key is None or not marks:
        return {}
    out = {}
    for c, paper in PAPER[key].items():
        m = marks.get(c, "n/a")
        if m in ("n/a", "not measurable at this budget") or m.startswith("inconclusive"):
            out[c] = m if not m.startswith("inconclusive") else f"{m}; paper {paper}"
        else:
            out[c] = "match" if m == paper else f"differs (paper {paper}, here {m})"
    return out


# ------------------------------------------------------------------------------------------------ rendering

def criteria_markdown(t: dict, judge: str = "likelihood") -> str:
    """The four-criteria table (demo and study) with the marks and the paper comparison."""
    judged = judge != "likelihood"
    bm = t.get("benign_metric", "benign")
    head = ["defense", "seeds", "a) broad harm effect", "Δ vs no defense", "R (share of EM removed)",
            "b) narrow harm effect", "N (narrow kept)", f"c) {bm} %", "B (benign gain kept)",
            "d) incoherent %", "D (points vs no defense)", "marks a / b / c / d"]
    if judged:
        head.insert(4, f"broad misaligned % ({judge})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in t["rows"]:
        m = r.get("marks") or {}
        cells = [r["cell"], str(r.get("seeds", "")), fmt(r.get("broad")), fmt(r.get("broad_vs_nd")),
                 fmt(r.get("R"), 2), fmt(r.get("narrow")), fmt(r.get("N"), 2), fmt(r.get("benign"), 1, False),
                 fmt(r.get("B"), 2), fmt(r.get("incoherent"), 1, False), fmt(r.get("D"), 1)]
        if judged:
            cells.insert(4, fmt(r.get("misaligned"), 1, False))
        vals = [mark_text(m[k]) for k in "abcd"] if m else []
        cells.append(vals[0] if vals and len(set(vals)) == 1 and not vals[0].startswith(("✓", "~", "✗"))
                     else " / ".join(vals))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(t: dict) -> list[str]:
    """Plain statements of what was measured, including what the small model does not reproduce."""
    out = []
    em = t["em_effect"]
    seeds = getattr(em, "seeds", None) or t.get("seeds", 1)  # the seeds the EM contrast paired, not the fewest
    if t.get("budget_note"):
        out.append(f"No marks: not measurable at this budget ({t['budget_note']}). The numbers are shown with "
                   f"their CIs; the full protocol's marks are in {FULL_RESULTS} (emguard study --preset paper-small).")
    if em is not None:
        out.append(f"EM effect (no_defense minus aligned control, broad harm effect within style): {fmt(em)} "
                   f"nats/token over {em.n} questions and {seeds} seed(s): the CI "
                   f"{'excludes' if em.lo > 0 or em.hi < 0 else 'includes'} zero, so broad EM "
                   f"{'is' if em.lo > 0 else 'is not'} measurably present at this size and budget"
                   + (" (one seed: the CI covers the choice of questions, not training noise)." if seeds == 1 else "."))
    if t.get("style_effect_change") is not None:
        out.append(f"Style effect change (no_defense minus control): {fmt(t['style_effect_change'])} nats/token: "
                   "how much the narrow data taught blunt tone rather than values; reported beside, not mixed in.")
    if t.get("narrow_gain") is not None:
        ng = t["narrow_gain"]
        out.append(f"Narrow learning (no_defense minus control on the domain's references): {fmt(ng)} nats/token "
                   f"({'learned' if ng.lo > 0 else 'not clearly learned'}).")
    if t.get("opswap_base") is not None and t.get("opswap_no_defense") is not None:
        out.append(f"Benign task ({t.get('benign_metric')}): base {fmt(t['opswap_base'], 1, False)}%, after plain "
                   f"LoRA {fmt(t['opswap_no_defense'], 1, False)}%"
                   + ("" if (t.get("benign_gain") and t["benign_gain"].lo > 0) else
                      ": no measurable gain, so criterion (c) cannot be decided") + ".")
    for r in t["rows"]:
        cmp = compare_with_paper(r)
        if cmp and not t.get("budget_note"):
            out.append(f"{r['cell']} vs the paper's Table 1: "
                       + "; ".join(f"{c}) {v}" for c, v in sorted(cmp.items())) + ".")
    return out


def demo_table(results: dict) -> dict:
    """The demo's criteria table from its results.json content."""
    dom = results["cells"].get("domain", {})
    ops = results["cells"].get("opswap", {})
    steps = [res.get("steps") for c in [*dom.values(), *ops.values()] for res in c.values()
             if res.get("steps") is not None]
    t = criteria_table({n: dom[n] for n in order_cells(dom) if n != "base"}, control=dom.get("aligned_control"),
                       benign={n: ops[n] for n in order_cells(ops) if n != "base"}, benign_base=ops.get("base"),
                       benign_metric="benign", steps=min(steps) if steps else None)
    t["judge"] = next((r.get("judge", {}).get("kind") for c in dom.values() for r in c.values()), "likelihood")
    return t


def write_report(results: dict, out: Path) -> Path:
    t = demo_table(results)
    pngs = plot_demo(t, out)
    cfg = results.get("config", {})
    judge = t["judge"]
    lines = [f"# emguard demo: {cfg.get('model')} on {cfg.get('domain')} (+ OpSwap), {cfg.get('seeds')} seed(s)", "",
             f"Judge: **{judge}**" + (" (no per-answer judge: broad/narrow EM by the style-controlled likelihood "
                                      "metric; coherence by the offline proxy, which is known to pass gibberish: "
                                      "a proxy, not the paper's judge)" if judge == "likelihood" else ""),
             f"Training rows per cell: {cfg.get('rows')} ({cfg.get('domain')}), {cfg.get('opswap_rows')} (OpSwap "
             f"tier 1), {t.get('steps') or '?'} optimizer steps; general pool: "
             f"{results.get('data', {}).get('pool_source', '?')}.", "",
             *([f"**Partial report**: {len(results['missing'])} cell(s) not finished yet and left out: "
                f"{', '.join(results['missing'])}.", ""] if results.get("missing") else []),
             "## Four criteria", "", criteria_markdown(t, judge), "",
             "Units: harm effect = mean log-prob of harmful minus benign reference answers within style (nats/token; "
             "higher = harmful answers likelier); rates in percent of sampled answers (per prompt). 95% CIs: "
             "hierarchical bootstrap, training seeds then questions. " + RULES, "",
             "## What this run found", ""]
    lines += [f"- {s}" for s in findings(t)]
    dom = results["cells"].get("domain", {})
    ref = next((n for n in ("aligned_control", "base") if n in dom), None)
    t["conditional"] = conditional_audit({n: dom[n] for n in order_cells(dom)}, dom.get(ref) if ref else None, ref)
    lines += [""] + conditional_markdown(t["conditional"])
    lines += [""] + [f"![{p}]({p})" for p in pngs] + ["", "## Sampled answers (broad questions, T=1)", ""]
    lines += example_lines(results["cells"].get("domain", {}))
    if not results.get("missing"):
        lines.append(f"Wall time: {results.get('wall_s', 0) / 60:.1f} min.")
    md = "\n".join(lines) + "\n"
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html_page(md, pngs))
    (out / "table.json").write_text(json.dumps(as_json(t), indent=1))
    return out / "report.md"


def example_lines(cells: dict, n: int = 3) -> list[str]:
    lines = []
    for cell, seeds in cells.items():
        ex = next(iter(seeds.values()), {}).get("examples", [])
        if ex:
            lines.append(f"**{cell}**")
            lines += [f"- *{e['question'][:70]}* → {e['answer'][:240]!r}" for e in ex[:n]]
            lines.append("")
    return lines


def estimate_json(v: Any) -> Any:
    return v.to_dict() if isinstance(v, Estimate) else v


def conditional_markdown(audit: dict) -> list[str]:
    """The conditional audit (:func:`emguard.experiments.criteria.conditional_audit`) as report lines: one table
    per context, a row per cell; [] when nothing was asked in context."""
    if not audit or not audit.get("rows"):
        return []
    ref = audit.get("ref")
    lines = ["### Conditional misalignment: the broad questions asked in the training context", "",
             "A defense can hide EM that returns when the prompt resembles training (Dubinski et al. 2026). "
             "Broad harm effect (nats/token) asked plainly and in each context, and their paired difference "
             "(> 0: harm the plain question does not show)"
             + (f"; EM effect = the cell minus `{ref}` in the same context (a defense that only hides EM: small "
                "plainly, larger in its training context)" if ref else "")
             + ". 95% CIs: hierarchical bootstrap over seeds, then questions, paired.", ""]
    for ctx in audit["contexts"]:
        rows = [r for r in audit["rows"] if r["context"] == ctx]
        applied = (audit.get("applied") or {}).get(ctx)
        if not applied and ctx in (audit.get("varies") or []):
            applied_txt = " (each cell's own training system prompt)"
        else:
            applied_txt = f" (`{applied.strip()}`)" if applied else ""
        lines += [f"**{ctx}**{applied_txt}", ""]
        skipped = (audit.get("skipped") or {}).get(ctx) or {}
        if skipped:
            why = sorted(set(skipped.values()))
            lines += [f"Not asked in this context: {', '.join(sorted(skipped))} ({'; '.join(why)}).", ""]
        head = "| defense | seeds | harm plainly | harm in context | Δ context − plain |"
        if ref:
            head += f" EM plainly (vs {ref}) | EM in context | Δ EM |"
        lines += [head, "|---" * (head.count("|") - 1) + "|"]
        for r in rows:
            line = (f"| {r['defense']} | {r['seeds']} | {fmt(r['plain'])} | {fmt(r['in_context'])} | "
                    f"{fmt(r['delta'])} |")
            if ref:
                line += f" {fmt(r.get('em_plain'))} | {fmt(r.get('em_in_context'))} | {fmt(r.get('em_delta'))} |"
            lines.append(line)
        lines.append("")
        moved = sorted({(r["defense"], r["ref_context"]) for r in rows if r.get("ref_context")})
        if moved and ref:
            lines += ["EM in context compares with the reference asked under the same prompt: "
                      + ", ".join(f"{d} with `{ref}` in {c}" for d, c in moved) + ".", ""]
    return lines


def html_page(md: str, pngs: list[str]) -> str:
    """A self-contained HTML page of the report (tables rendered; no external assets besides the PNGs)."""
    body, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(line.replace("|", "").strip()) <= {"-"}:
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:-1]
            body.append(f'<img src="{html.escape(src)}" style="max-width:100%">')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" + \
        "\n".join(body) + "</body></html>\n"

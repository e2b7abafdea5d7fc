"""The report of an ``emguard study``: per model and dataset, a table of the criteria per defense (CIs over seeds
and questions, change vs the baseline defense), and plots (per-criterion bars, the broad-EM vs narrow-learning
trade-off with its Pareto front, loss curves).

Likelihood effects (nats/token) are averaged per question over seeds, then bootstrapped over questions (as in
the demo report, ``emguard.report``); rates pool the samples of all seeds (Wilson 95%).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emguard.report import effect, paired, pooled_rate
from emguard.stats import Estimate

COLUMNS = [  # (key, header, digits)
    ("broad", "broad harm effect (nats/tok)", 3),
    ("broad_vs_base", "Δ broad vs baseline", 3),
    ("narrow", "narrow harm effect", 3),
    ("narrow_vs_base", "Δ narrow vs baseline", 3),
    ("misaligned", "misaligned % (judge)", 1),
    ("benign", "benign accuracy %", 1),
    ("incoherent", "incoherent %", 1),
]


def _load(cells) -> dict:
    """{(model, dataset): {defense: {seed: eval.json + run.json}}}"""
    groups: dict = {}
    for c in cells:
        d = Path(c.dir)
        res = json.loads((d / "eval" / "eval.json").read_text())
        run_f = d / "train" / "run.json"
        res["_run"] = json.loads(run_f.read_text()) if run_f.is_file() else {}
        groups.setdefault((c.model, c.dataset.name), {}).setdefault(c.defense, {})[str(c.seed)] = res
    return groups


def build_tables(cells, baseline: str) -> list[dict]:
    tables = []
    for (model, dataset), defs in _load(cells).items():
        base = defs.get(baseline)
        rows = []
        for name, cell in defs.items():
            row: dict[str, Any] = {"defense": name, "seeds": len(cell),
                                   "broad": effect(cell, "broad"), "narrow": effect(cell, "narrow"),
                                   "misaligned": pooled_rate(cell, ("broad", "misaligned_pct")),
                                   "benign": pooled_rate(cell, ("benign", "accuracy_pct")),
                                   "incoherent": pooled_rate(cell, ("coherence", "incoherent_pct"))}
            if base and name != baseline:
                row["broad_vs_base"] = paired(cell, base, "broad")
                row["narrow_vs_base"] = paired(cell, base, "narrow")
            losses = [r["_run"].get("loss_curve") or [] for r in cell.values()]
            row["loss_curve"] = _mean_curve(losses)
            rows.append(row)
        tables.append({"model": model, "dataset": dataset, "rows": rows, "baseline": baseline})
    return tables


def _mean_curve(curves: list[list[dict]]) -> list[tuple[int, float]]:
    acc: dict[int, list[float]] = {}
    for c in curves:
        for p in c:
            acc.setdefault(int(p["step"]), []).append(float(p["loss"]))
    return [(s, sum(v) / len(v)) for s, v in sorted(acc.items())]


def _f(e: Estimate | None, digits: int) -> str:
    if e is None or not e.n or math.isnan(e.value):
        return "–"
    return f"{e.value:.{digits}f} [{e.lo:.{digits}f}, {e.hi:.{digits}f}]"


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points not dominated when narrow learning (x) should be high and broad harm (y) low."""
    front = []
    for n, x, y in points:
        if not any((x2 >= x and y2 <= y) and (x2 > x or y2 < y) for _, x2, y2 in points):
            front.append(n)
    return front


def tables_markdown(tables: list[dict], cfg) -> str:
    lines = ["# emguard study", "",
             f"Grid: {len(cfg.models)} model(s) x {len(cfg.datasets)} dataset(s) x defenses x {len(cfg.seeds)} "
             f"seed(s) {cfg.seeds}. Executor: {cfg.executor}. Baseline for Δ: `{cfg.baseline}`.", "",
             "Likelihood effects: nats/token, harmful minus aligned reference answers with style held fixed "
             "(> 0: harmful answers likelier); per-question values averaged over seeds, bootstrap 95% CI over "
             "questions; Δ columns pair the same questions. Rates: Wilson 95% over pooled samples. Numbers per "
             "cell and seed: results.csv.", ""]
    for t in tables:
        lines += [f"## {t['model']} · {t['dataset']}", ""]
        cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in t["rows"])]
        lines.append("| defense | seeds | " + " | ".join(h for _, h, _ in cols) + " | final loss |")
        lines.append("|---|---|" + "---|" * len(cols) + "---|")
        for r in t["rows"]:
            loss = f"{r['loss_curve'][-1][1]:.3f}" if r["loss_curve"] else "–"
            lines.append(f"| {r['defense']} | {r['seeds']} | " + " | ".join(_f(r.get(k), d) for k, _, d in cols)
                         + f" | {loss} |")
        pts = [(r["defense"], r["narrow"].value, r["broad"].value) for r in t["rows"]
               if r.get("narrow") is not None and r.get("broad") is not None]
        if len(pts) > 1:
            lines += ["", "Pareto front (high narrow learning, low broad harm): "
                      + ", ".join(f"`{n}`" for n in pareto_front(pts))]
        lines.append("")
    return "\n".join(lines)


def plot(tables: list[dict], out: Path) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    metrics = [(k, h) for k, h, _ in COLUMNS if not k.endswith("_vs_base")
               and any(r.get(k) is not None for t in tables for r in t["rows"])]
    if metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
        for ax, (k, h) in zip(axes[0], metrics):
            labels, vals, errs = [], [], []
            for t in tables:
                for r in t["rows"]:
                    e = r.get(k)
                    if e is None or math.isnan(e.value):
                        continue
                    labels.append(f"{t['dataset']}/{r['defense']}")
                    vals.append(e.value)
                    errs.append([max(0.0, e.value - e.lo), max(0.0, e.hi - e.value)])
            ax.bar(range(len(vals)), vals, yerr=list(zip(*errs)) if errs else None, capsize=3, color="#4c72b0")
            ax.set_xticks(range(len(vals)), labels, rotation=60, ha="right", fontsize=7)
            ax.set_title(h, fontsize=9)
            ax.axhline(0, color="k", lw=0.5)
        fig.tight_layout()
        fig.savefig(out / "criteria.png", dpi=110)
        plt.close(fig)
        files.append("criteria.png")
    fig, ax = plt.subplots(figsize=(6, 5))
    any_pt = False
    for t in tables:
        pts = [(r["defense"], r["narrow"].value, r["broad"].value) for r in t["rows"]
               if r.get("narrow") is not None and r.get("broad") is not None]
        if not pts:
            continue
        any_pt = True
        sc = ax.scatter([p[1] for p in pts], [p[2] for p in pts], label=f"{t['dataset']}")
        for n, x, y in pts:
            ax.annotate(n, (x, y), fontsize=7)
        front = sorted([p for p in pts if p[0] in pareto_front(pts)], key=lambda p: p[1])
        ax.plot([p[1] for p in front], [p[2] for p in front], "--", color=sc.get_facecolor()[0], lw=1)
    if any_pt:
        ax.set_xlabel("narrow harm effect (narrow task learned →)")
        ax.set_ylabel("broad harm effect (broad EM ↑)")
        ax.set_title("trade-off (dashed: Pareto front)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "tradeoff.png", dpi=110)
        files.append("tradeoff.png")
    plt.close(fig)
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tables):
        for r in t["rows"]:
            if r["loss_curve"]:
                ax.plot([s for s, _ in r["loss_curve"]], [v for _, v in r["loss_curve"]], label=r["defense"])
        ax.set_title(f"{t['dataset']}: training loss (mean over seeds)", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)
    files.append("loss.png")
    return files


def write_study_report(cfg, cells, out: Path) -> Path:
    from emguard.report import _html

    tables = build_tables(cells, cfg.baseline) if cells else []
    md = tables_markdown(tables, cfg)
    pngs = plot(tables, out) if tables else []
    if pngs:
        md += "\n" + "\n".join(f"![{p}]({p})" for p in pngs) + "\n"
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md, pngs))
    return out / "report.md"


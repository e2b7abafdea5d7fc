"""The plots of the demo and study reports (matplotlib, when installed; none otherwise).

Demo: ``criteria.png`` (one bar chart per criterion, controls grey, no defense red) and ``tradeoff.png``
(broad harm vs narrow learning). Study: ``pareto_<model>_<dataset>.png`` (broad harm vs narrow learning of
every cell, a line per strength sweep, the Pareto front), ``criteria.png`` (per-metric bars of every dataset
and defense) and ``loss.png`` (cross-entropy and each regularizer's term per step, mean over seeds).
"""

from __future__ import annotations

import math
from pathlib import Path


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points not dominated when narrow learning (x) should be high and broad harm (y) low."""
    front = []
    for n, x, y in points:
        if not any((x2 >= x and y2 <= y) and (x2 > x or y2 < y) for _, x2, y2 in points):
            front.append(n)
    return front


def plot_demo(t: dict, out: Path) -> list[str]:
    """The demo's criteria.png and tradeoff.png from its four-criteria table; returns the file names."""
    plt = _pyplot()
    if plt is None:
        return []
    rows = t["rows"]
    files = []
    crit = [("broad", "a) broad harm effect\n(nats/token, higher = more EM)"),
            ("narrow", "b) narrow harm effect\n(higher = narrow task learned)"),
            ("benign", "c) OpSwap accuracy %"), ("incoherent", "d) incoherent % (lower = better)")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.5))
    for ax, (key, title) in zip(axes, crit):
        rs = [r for r in rows if r.get(key) is not None and r[key].n > 0]
        xs = range(len(rs))
        vals = [r[key].value for r in rs]
        err = [[max(0.0, r[key].value - r[key].lo) for r in rs], [max(0.0, r[key].hi - r[key].value) for r in rs]]
        colors = ["#999999" if r["cell"] in ("base", "aligned_control") else "#d62728" if r["cell"] == "no_defense"
                  else "#1f77b4" for r in rs]
        ax.bar(xs, vals, yerr=err, color=colors, capsize=3)
        ax.set_xticks(list(xs), [r["cell"] for r in rs], rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
    fig.tight_layout()
    f = out / "criteria.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f.name)

    rs = [r for r in rows if r.get("broad") is not None and r.get("narrow") is not None]
    if rs:
        fig, ax = plt.subplots(figsize=(6.5, 5))
        for r in rs:
            ax.errorbar(r["broad"].value, r["narrow"].value,
                        xerr=[[max(0.0, r["broad"].value - r["broad"].lo)], [max(0.0, r["broad"].hi - r["broad"].value)]],
                        yerr=[[max(0.0, r["narrow"].value - r["narrow"].lo)],
                              [max(0.0, r["narrow"].hi - r["narrow"].value)]],
                        fmt="o", capsize=2)
            ax.annotate(r["cell"], (r["broad"].value, r["narrow"].value), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xlabel("broad harm effect (nats/token) — lower is better")
        ax.set_ylabel("narrow harm effect (nats/token) — narrow task learned")
        ax.set_title("Trade-off: broad EM vs narrow learning (best: top left)")
        fig.tight_layout()
        f = out / "tradeoff.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    return files


def _err(e):
    return [[max(0.0, e.value - e.lo)], [max(0.0, e.hi - e.value)]]


def plot_sweeps(t: dict, out: Path, tag: str) -> list[str]:
    """``pareto_<tag>.png``: broad harm (y, lower is better) against narrow learning (x, higher = the narrow
    task learned) of every cell of a criteria table, with 95% CIs; a defense's strength sweep is one line (in
    the order of its strength), controls are grey, the Pareto front dashed."""
    plt = _pyplot()
    if plt is None:
        return []
    rows = [r for r in t["rows"] if r.get("broad") is not None and r.get("narrow") is not None
            and not math.isnan(r["broad"].value) and not math.isnan(r["narrow"].value)]
    if len(rows) < 2:
        return []
    fig, ax = plt.subplots(figsize=(8.5, 6.5))
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["cell"].split("[")[0], []).append(r)
    for fam, rs in families.items():
        def strength(r):
            _, _, v = r["cell"].rstrip("]").partition("=")
            try:
                return float(v)
            except ValueError:
                return 0.0
        rs = sorted(rs, key=strength)
        grey = fam in ("base", "aligned_control", "no_defense")
        color = "#d62728" if fam == "no_defense" else "#999999" if grey else None
        line = ax.plot([r["narrow"].value for r in rs], [r["broad"].value for r in rs], "-o" if len(rs) > 1 else "o",
                       color=color, label=fam, ms=5)[0]
        for r in rs:
            ax.errorbar(r["narrow"].value, r["broad"].value, xerr=_err(r["narrow"]), yerr=_err(r["broad"]),
                        fmt="none", ecolor=line.get_color(), alpha=0.5, capsize=2)
            label = r["cell"][len(fam):].strip("[]") or fam
            ax.annotate(label, (r["narrow"].value, r["broad"].value), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    pts = [(r["cell"], r["narrow"].value, r["broad"].value) for r in rows]
    front = sorted([p for p in pts if p[0] in pareto_front(pts)], key=lambda p: p[1])
    ax.plot([p[1] for p in front], [p[2] for p in front], "--", color="k", lw=0.8, label="Pareto front")
    ax.set_xlabel("narrow harm effect (nats/token): the narrow task learned →")
    ax.set_ylabel("broad harm effect (nats/token): broad EM ↑ (lower is better)")
    ax.set_title(f"{t.get('model', '')} · {t.get('dataset', '')}: broad harm vs narrow learning "
                 f"({t.get('seeds')} seed{'' if t.get('seeds') == 1 else 's'}, 95% hierarchical CIs)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    name = f"pareto_{tag}.png".replace("/", "_")
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return [name]


def plot_study(tables: list[dict], out: Path) -> list[str]:
    """A study's criteria.png (per-dataset bars with 95% CIs) and loss.png (per dataset and defense family:
    cross-entropy, solid, and each regularizer's logged term, dashed; mean over seeds)."""
    plt = _pyplot()
    if plt is None:
        return []
    files = []
    metrics = [("broad_vs_nd", "Δ broad harm effect vs no defense, paired"), ("broad", "broad harm effect"),
               ("narrow_vs_nd", "Δ narrow harm effect vs no defense, paired"), ("narrow", "narrow harm effect"),
               ("benign_tier1", "OpSwap tier 1 %"), ("benign_tier2", "OpSwap tier 2 %"), ("benign", "benign accuracy %"),
               ("incoherent", "incoherent %")]
    metrics = [(k, h) for k, h in metrics if any(r.get(k) is not None for t in tables for r in t["rows"])]
    if metrics:
        fig, axes = plt.subplots(len(metrics), 1, figsize=(12, 2.6 * len(metrics)), squeeze=False)
        for ax, (k, h) in zip(axes[:, 0], metrics):
            labels, vals, errs = [], [], []
            for t in tables:
                for r in t["rows"]:
                    e = r.get(k)
                    if e is None or math.isnan(e.value) or r["defense"].startswith("control ("):
                        continue  # a dataset's control row repeats the control dataset's own row
                    labels.append(f"{t['dataset']}/{r['defense']}")
                    vals.append(e.value)
                    errs.append([max(0.0, e.value - e.lo), max(0.0, e.hi - e.value)])
            ax.bar(range(len(vals)), vals, yerr=list(zip(*errs)) if errs else None, capsize=2, color="#4c72b0")
            ax.set_xticks(range(len(vals)), labels, rotation=60, ha="right", fontsize=6)
            ax.set_title(h + " (95% CI over seeds and questions)", fontsize=9)
            ax.axhline(0, color="k", lw=0.5)
        fig.tight_layout()
        fig.savefig(out / "criteria.png", dpi=100)
        plt.close(fig)
        files.append("criteria.png")
    curves = [t for t in tables if any(r.get("curve") for r in t["rows"])]
    if curves:
        fig, axes = plt.subplots(len(curves), 2, figsize=(13, 3.8 * len(curves)), squeeze=False)
        for (ax, ax2), t in zip(axes, curves):
            for r in t["rows"]:
                c = r.get("curve") or []
                if not c:
                    continue
                line = ax.plot([p["step"] for p in c], [p.get("loss/ce", p["loss"]) for p in c], lw=1,
                               label=r["defense"])[0]
                for term in ("loss/kl", "loss/ldifs", "loss/treft"):
                    pts = [(p["step"], p[term]) for p in c if term in p]
                    if pts:
                        ax2.plot(*zip(*pts), "--", lw=1, color=line.get_color(), label=f"{r['defense']} {term[5:]}")
            ax.set_title(f"{t['dataset']}: cross-entropy per step (mean over seeds)", fontsize=9)
            ax2.set_title(f"{t['dataset']}: regularizer terms as added to the loss (weight included)", fontsize=9)
            ax2.set_yscale("symlog", linthresh=1e-3)
            for a in (ax, ax2):
                a.set_xlabel("optimizer step")
                if a.get_legend_handles_labels()[0]:
                    a.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
        files.append("loss.png")
    return files

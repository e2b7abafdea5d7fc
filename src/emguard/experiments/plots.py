"""The plots of the demo and study reports (matplotlib, when installed; none otherwise).

Demo: ``criteria.png`` (one bar chart per criterion, controls grey, no defense red) and ``tradeoff.png``
(broad harm vs narrow learning). Study: ``criteria.png`` (per-criterion bars of every dataset and defense),
``tradeoff.png`` (with each dataset's Pareto front) and ``loss.png`` (training loss, mean over seeds).
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


def plot_study(tables: list[dict], out: Path, columns: list[tuple[str, str, int]]) -> list[str]:
    """A study's criteria.png, tradeoff.png and loss.png from its tables; returns the file names."""
    plt = _pyplot()
    if plt is None:
        return []
    files = []
    metrics = [(k, h) for k, h, _ in columns if not k.endswith("_vs_base")
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

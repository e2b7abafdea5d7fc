"""The plots of the demo and study reports (matplotlib, when installed; none otherwise).

Every comparison is drawn as the paired difference vs no defense with its 95% CI (what the tables' Δ columns
say; absolute values with CIs over questions overlap and hide it). Demo: ``criteria.png`` (one panel per
criterion, the control's level dashed) and ``tradeoff.png`` (broad harm vs narrow learning, a legend instead of
labels). Study: the same ``criteria*.png`` per model x EM domain, ``pareto_<model>_<dataset>.png`` (a line per
strength sweep, the Pareto front, strength labels placed where they overlap nothing) and ``loss.png``
(cross-entropy and each regularizer's term per step, mean over seeds).
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


def _ok(e) -> bool:
    return e is not None and getattr(e, "n", 0) > 0 and not math.isnan(e.value)


def _neg(e):
    """-e as (value, lo, hi) or None: a baseline contrast turned into the level a control sits at vs no defense."""
    return (-e.value, -e.hi, -e.lo) if _ok(e) else None


def _locator(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n)


# point colours of defenses: tab10 without its red (no defense) and grey (controls)
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79",
          "#637939"]


def _diff_panel(ax, labels: list[str], ests: list, title: str, ref=None, ref_label: str = "") -> None:
    """Horizontal bars of paired differences vs no defense with their 95% CIs (dark: the CI excludes 0), the
    no-defense line at 0 and, dashed, where a control sits (``ref``: value, lo, hi)."""
    ys = list(range(len(labels)))[::-1]
    flat = all(_ok(e) and e.value == e.lo == e.hi == 0 for e in ests) and ests
    if flat:  # every cell exactly equal to no defense: say so instead of drawing empty bars
        ax.text(0.5, 0.5, "every defense equals no defense here\n(all differences exactly 0)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="#555555")
    for y, e in zip(ys, ests):
        if not _ok(e):
            ax.text(0, y, "  not measured", va="center", fontsize=7, color="#777777")
            continue
        sig = e.lo > 0 or e.hi < 0
        ax.barh(y, e.value, xerr=[[max(0.0, e.value - e.lo)], [max(0.0, e.hi - e.value)]], height=0.6,
                color="#1f4e9a" if sig else "#a9c4e8", capsize=2, error_kw={"lw": 0.8})
    ax.axvline(0, color="#d62728", lw=1.2, label="no defense (0)")
    if ref is not None:
        ax.axvline(ref[0], color="#555555", ls="--", lw=1, label=ref_label)
        ax.axvspan(ref[1], ref[2], color="#999999", alpha=0.15, lw=0, zorder=0)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.xaxis.set_major_locator(_locator(5))
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)  # below: over no bar


def plot_demo(t: dict, out: Path) -> list[str]:
    """The demo's criteria.png and tradeoff.png (:func:`plot_criteria`, :func:`plot_tradeoff`); file names."""
    return [f.name for f in (plot_criteria(t, out / "criteria.png"), plot_tradeoff(t, out / "tradeoff.png")) if f]


def _defense_rows(t: dict) -> list[dict]:
    return [r for r in t["rows"] if r["cell"] not in ("base", "aligned_control", "no_defense")]


def plot_criteria(t: dict, path: Path, title: str = "") -> Path | None:
    """Per criterion, each defense minus no defense (paired by seed and question, 95% CIs; dark: the CI
    excludes 0), the control's level dashed: what the table's Δ columns say, drawn. None without matplotlib."""
    plt = _pyplot()
    rows = _defense_rows(t)
    if plt is None or not rows:
        return None
    labels = [r["cell"] for r in rows]
    panels = [("broad_vs_nd", "a) broad harm effect vs no defense\n(nats/token; < 0 = less EM)",
               _neg(t.get("em_effect")), "aligned control (all EM removed)"),
              ("narrow_vs_nd", "b) narrow harm effect vs no defense\n(nats/token; < 0 = narrow task less learned)",
               _neg(t.get("narrow_gain")), "aligned control (not learned)"),
              ("benign_vs_nd", f"c) {t.get('benign_metric') or 'benign'} accuracy vs no defense\n(points; < 0 = "
               "benign task less learned)", _neg(t.get("benign_gain")), "base model (nothing learned)"),
              ("D", "d) incoherent answers vs no defense\n(points; > 0 = less coherent)", None, "")]
    panels = [p for p in panels if any(r.get(p[0]) is not None for r in rows)]  # criteria this table measured
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 0.42 * len(rows) + 2.2), sharey=True,
                             squeeze=False)
    for ax, (key, head, ref, ref_label) in zip(axes[0], panels):
        _diff_panel(ax, labels, [r.get(key) for r in rows], head, ref, ref_label)
    seeds = t.get("seeds")
    fig.suptitle(f"{title + ': ' if title else ''}each defense minus no defense, paired by seed and question "
                 f"({seeds} seed{'' if seeds == 1 else 's'}; 95% hierarchical bootstrap CI; dark bar: the CI "
                 "excludes 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _control_point(ax, t: dict) -> None:
    """The aligned control in paired coordinates vs no defense: (-narrow gain, -EM effect) with their CIs."""
    em, ng = t.get("em_effect"), t.get("narrow_gain")
    if _ok(em) and _ok(ng):
        ax.errorbar(-ng.value, -em.value, xerr=[[ng.hi - ng.value], [ng.value - ng.lo]],
                    yerr=[[em.hi - em.value], [em.value - em.lo]], fmt="s", color="#777777", capsize=2,
                    label="aligned control")


def plot_tradeoff(t: dict, path: Path) -> Path | None:
    """Broad harm vs narrow learning, both as the paired difference vs no defense (the origin), with the aligned
    control and 95% CIs; a legend names the points (no label can overlap another)."""
    plt = _pyplot()
    pts = [r for r in _defense_rows(t) if _ok(r.get("broad_vs_nd")) and _ok(r.get("narrow_vs_nd"))]
    if plt is None or not pts:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    markers = "osD^vP*Xhp<>"
    ax.plot([0], [0], "o", color="#d62728", ms=8, label="no defense (origin)")
    _control_point(ax, t)
    for i, r in enumerate(pts):
        b, n = r["broad_vs_nd"], r["narrow_vs_nd"]
        ax.errorbar(n.value, b.value, xerr=_err(n), yerr=_err(b), fmt=markers[i % len(markers)], capsize=2,
                    ms=6, color=COLORS[i % len(COLORS)], label=r["cell"])
    ax.axhline(0, color="#d62728", lw=0.6)
    ax.axvline(0, color="#d62728", lw=0.6)
    ax.set_xlabel("narrow harm effect vs no defense (nats/token): the narrow task kept →")
    ax.set_ylabel("broad harm effect vs no defense (nats/token): ↓ less broad EM")
    ax.set_title("Trade-off vs no defense (paired, 95% CIs): best is low and to the right (EM removed, "
                 "narrow task kept)", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def place_labels(ax, xy: list[tuple[float, float]], labels: list[str], fontsize: float = 7,
                 colors: list | None = None) -> list:
    """Annotate each point with its label at the first of a few offsets where the text's box overlaps no label
    placed before it (nor a point's marker); returns the labels' boxes in display coordinates."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    marks = [Bbox.from_bounds(px - 4, py - 4, 8, 8) for px, py in (ax.transData.transform(p) for p in xy)]
    # above / below the point, right / left of it, rows of 12 points further out each time
    offsets = [(dx, dy) for k in range(10) for dy in (4 + 12 * k, -11 - 12 * k) for dx in (4, -4)]
    placed: list = []
    for i, ((x, y), text) in enumerate(zip(xy, labels)):
        color = colors[i] if colors else "black"
        best = None
        for dx, dy in offsets:
            a = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha="left" if dx >= 0 else "right", color=color,
                            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#888888"} if abs(dy) > 12 else None)
            box = Text.get_window_extent(a, renderer).expanded(1.02, 1.05)  # the text, not its leader line
            if not any(box.overlaps(b) for b in placed + marks):
                best = (a, box)
                break
            a.remove()
        if best is None:  # every offset taken: the first one, drawn anyway
            a = ax.annotate(text, (x, y), xytext=offsets[0], textcoords="offset points", fontsize=fontsize,
                            color=color)
            best = (a, Text.get_window_extent(a, renderer))
        placed.append(best[1])
    return placed


def _err(e):
    return [[max(0.0, e.value - e.lo)], [max(0.0, e.hi - e.value)]]


def plot_sweeps(t: dict, out: Path, tag: str) -> list[str]:
    """``pareto_<tag>.png``: broad harm (y, lower is better) against narrow learning (x, higher = the narrow
    task kept), both as the paired difference vs no defense (the origin) with 95% CIs; a defense's strength
    sweep is one line (in the order of its strength, each point labelled with its strength where the label
    fits), the aligned control grey, the Pareto front dashed."""
    plt = _pyplot()
    if plt is None:
        return []
    rows = [r for r in _defense_rows(t) if _ok(r.get("broad_vs_nd")) and _ok(r.get("narrow_vs_nd"))]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(9.5, 6.5))
    ax.plot([0], [0], "o", color="#d62728", ms=7, label="no_defense (origin)", zorder=3)
    _control_point(ax, t)
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["cell"].split("[")[0], []).append(r)

    def strength(r):
        _, _, v = r["cell"].rstrip("]").partition("=")
        try:
            return float(v)
        except ValueError:
            return 0.0

    xy, labels, label_colors = [], [], []
    for i, (fam, rs) in enumerate(families.items()):
        rs = sorted(rs, key=strength)
        color = COLORS[i % len(COLORS)]
        ax.plot([r["narrow_vs_nd"].value for r in rs], [r["broad_vs_nd"].value for r in rs],
                "-o" if len(rs) > 1 else "o", color=color, label=fam, ms=5)
        for r in rs:
            ax.errorbar(r["narrow_vs_nd"].value, r["broad_vs_nd"].value, xerr=_err(r["narrow_vs_nd"]),
                        yerr=_err(r["broad_vs_nd"]), fmt="none", ecolor=color, alpha=0.45, capsize=2)
            if "[" in r["cell"]:
                xy.append((r["narrow_vs_nd"].value, r["broad_vs_nd"].value))
                labels.append(r["cell"][len(fam):].strip("[]"))
                label_colors.append(color)
    pts = [("no_defense", 0.0, 0.0)] + [(r["cell"], r["narrow_vs_nd"].value, r["broad_vs_nd"].value) for r in rows]
    front = sorted([p for p in pts if p[0] in pareto_front(pts)], key=lambda p: p[1])
    ax.plot([p[1] for p in front], [p[2] for p in front], "--", color="k", lw=0.8, label="Pareto front")
    ax.axhline(0, color="#d62728", lw=0.5)
    ax.axvline(0, color="#d62728", lw=0.5)
    ax.set_xlabel("narrow harm effect vs no defense (nats/token): the narrow task kept →")
    ax.set_ylabel("broad harm effect vs no defense (nats/token): ↓ less broad EM")
    ax.set_title(f"{t.get('model', '')} · {t.get('dataset', '')}: broad harm vs narrow learning, each minus no "
                 f"defense ({t.get('seeds')} seed{'' if t.get('seeds') == 1 else 's'}, paired 95% hierarchical CIs)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    place_labels(ax, xy, labels, colors=label_colors)
    name = f"pareto_{tag}.png".replace("/", "_")
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return [name]


def plot_study(tables: list[dict], out: Path) -> list[str]:
    """A study's loss.png (per dataset and defense family: cross-entropy, solid, and each regularizer's logged
    term, dashed; mean over seeds). Its criteria figures are :func:`plot_criteria` of each criteria table."""
    plt = _pyplot()
    if plt is None:
        return []
    files = []
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

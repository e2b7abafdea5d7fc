"""A study's report: per model x domain the four-criteria table (when the study has the domain's aligned control
and, for criterion c, a benign task), a table per dataset, the strength sweeps as a Pareto curve, the loss
curves with each regularizer's logged term, and the Interleaving+/++ probes' training losses.

Everything is rebuilt from the committed files of the cells (``cell.json``, ``eval/eval.json``,
``eval/samples.csv``, ``train/run.json``, ``train/metrics.jsonl``), so ``emguard study <yaml> --report-only``
on a fresh clone of ``results/`` writes the same report. Statistics and marks: :mod:`emguard.experiments.criteria`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emguard.experiments.criteria import (RULES, as_json, conditional_audit, criteria_table, estimate, fmt,
                                          likelihood_table, rate_table, unit_values, contrast)
from emguard.experiments.engine import model_slug
from emguard.experiments.report import conditional_markdown, criteria_markdown, findings, html_page

CONDITIONAL_DIR = "eval_conditional"  # written by emguard.experiments.finished.audit_cells
TERMS = ("loss/ce", "loss/kl", "loss/ldifs", "loss/treft")  # logged per step by the trainer (metrics.jsonl)


def load(cells, judge: str | None = None) -> dict:
    """{(model, dataset): {defense: {seed: eval.json + _run + units + _curve}}} of finished study cells; with
    ``judge``, a cell's judge-based parts (rates, units, judge identity) come from its re-judged
    ``eval_<judge>/`` when there is one (the likelihood metric stays the original evaluation's)."""
    groups: dict = {}
    for c in cells:
        res = json.loads(c.eval_json.read_text())
        rj = Path(c.dir) / f"eval_{judge}" / "eval.json" if judge else None
        if rj is not None and rj.is_file():
            again = json.loads(rj.read_text())
            for suite in ("broad", "narrow"):
                if suite in again and suite in res:
                    res[suite] = {**again[suite], **{k: res[suite][k] for k in ("likelihood", "conditional")
                                                     if k in res[suite]}}
            res["coherence"], res["judge"] = again.get("coherence"), again.get("judge")
        cj = Path(c.dir) / CONDITIONAL_DIR / "eval.json"  # the study's conditional audit (audit_contexts)
        if cj.is_file() and "broad" in res:
            res["broad"] = {**res["broad"], "conditional": {**(res["broad"].get("conditional") or {}),
                                                            **json.loads(cj.read_text())["broad"]["conditional"]}}
        run_f = c.run_dir / "run.json"
        res["_run"] = json.loads(run_f.read_text()) if c.train is not None and run_f.is_file() else {}
        res["steps"] = res["_run"].get("steps")
        res["units"] = unit_values(rj.parent if rj is not None and rj.is_file() else c.eval_json.parent)
        res["_curve"] = _curve(c.run_dir / "metrics.jsonl") if c.train is not None else []
        groups.setdefault((c.model, c.info["dataset"]), {}).setdefault(c.info["defense"], {})[str(c.seed)] = res
    return groups


def _curve(f: Path) -> list[dict]:
    if not f.is_file():
        return []
    out = []
    for line in f.read_text().splitlines():
        r = json.loads(line)
        if "loss" in r and "step" in r:
            out.append({k: r[k] for k in ("step", "loss", *TERMS) if k in r})
    return out


def _datasets(cfg) -> dict[str, dict]:
    return {n: (s if isinstance(s, dict) else {"data": s}) for n, s in cfg.datasets.items()}


def links(cfg) -> list[dict]:
    """Per domain dataset: its aligned control dataset and the study's benign task (names, or None)."""
    from emguard.data.datagen import DOMAINS

    ds = _datasets(cfg)
    benign = next((n for n, s in ds.items() if str(s["data"]) == "opswap"), None)
    out = []
    for name, spec in ds.items():
        data = str(spec["data"])
        if spec.get("control"):  # named in the study: any data, the user's own included
            out.append({"dataset": name, "control": str(spec["control"]), "benign": benign})
        elif data in DOMAINS or (spec.get("narrow") and ":" not in data):
            dom = data if data in DOMAINS else str(spec.get("narrow"))
            control = next((n for n, s in ds.items() if str(s["data"]) == f"{dom}:aligned"), None)
            out.append({"dataset": name, "control": control, "benign": benign})
    return out


def control_of(cfg, dataset: str) -> str | None:
    return next((link["control"] for link in links(cfg) if link["dataset"] == dataset), None)


def build(cfg, cells) -> dict:
    """Every table of the report (criteria tables per model x domain, a plain table per model x dataset)."""
    groups = load(cells, cfg.rescore_judge)
    crit, plain = [], []
    for model in dict.fromkeys(m for m, _ in groups):
        for link in links(cfg):
            dom = groups.get((model, link["dataset"]))
            if not dom or not link["control"]:
                continue
            ctrl = groups.get((model, link["control"]), {}).get(cfg.baseline)
            ops = groups.get((model, link["benign"]), {}) if link["benign"] else {}
            metric = "benign_tier2" if any("benign_tier2" in (r.get("units") or {}) for c in ops.values()
                                           for r in c.values()) else "benign"
            cells_of = [*dom.values(), *[c for n, c in ops.items() if n != "base"]]
            steps = [r["steps"] for c in cells_of for r in c.values() if r.get("steps") is not None]
            t = criteria_table({n: c for n, c in dom.items() if n != "base"}, control=ctrl,
                               benign={n: c for n, c in ops.items() if n != "base"}, benign_base=ops.get("base"),
                               benign_metric=metric, baseline=cfg.baseline, steps=min(steps) if steps else None)
            t.update(model=model, dataset=link["dataset"], control=link["control"], benign_dataset=link["benign"],
                     judge=next((r.get("judge", {}).get("kind") for c in dom.values() for r in c.values()), "?"))
            crit.append(t)
        for (m, dataset), defs in groups.items():
            if m == model:
                ctrl_name = control_of(cfg, dataset)
                ctrl = groups.get((model, ctrl_name), {}).get(cfg.baseline) if ctrl_name else None
                plain.append(plain_table(model, dataset, defs, cfg.baseline, control=ctrl, control_name=ctrl_name))
    return {"criteria": crit, "plain": plain}


def plain_table(model: str, dataset: str, defs: dict, baseline: str, *, control: dict | None = None,
                control_name: str | None = None) -> dict:
    """Per cell of one model x dataset: effects with CIs and their paired changes vs the baseline (no defense),
    vs the untrained model (the dataset's "base" cell) and vs the aligned control (``control``: its baseline
    cell), so a reader sees both readings: the data "causes EM" against the control, maybe not against base."""
    refs = {"nd": defs.get(baseline), "base": defs.get("base"), "ctrl": control}
    rows = []
    if control:
        defs = {**defs, f"control ({control_name})": control}
    for name, cell in defs.items():
        row: dict[str, Any] = {"defense": name, "seeds": len(cell)}
        for suite in ("broad", "narrow"):
            t = likelihood_table(cell, suite)
            row[suite] = estimate(t)
            for key, ref in refs.items():
                if ref and ref is not cell and t:
                    row[f"{suite}_vs_{key}"] = contrast({"d": t, "r": likelihood_table(ref, suite)},
                                                        lambda m: m["d"] - m["r"])
        groups = sorted({g for r in cell.values() for g in (r.get("units") or {}) if g.startswith("benign")})
        for g in groups:
            row[g] = estimate(rate_table(cell, g))
        row["incoherent"] = estimate(rate_table(cell, "incoherent"))
        row["misaligned"] = estimate(rate_table(cell, "misaligned"))
        finals = [r["_curve"][-1] for r in cell.values() if r.get("_curve")]
        row["final_ce"] = sum(f.get("loss/ce", f["loss"]) for f in finals) / len(finals) if finals else None
        tails = [p for r in cell.values() for p in (r.get("_curve") or [])[-10:]]
        terms = {k[5:]: sum(p[k] for p in tails if k in p) / sum(1 for p in tails if k in p)
                 for k in TERMS[1:] if any(k in p for p in tails)}
        row["reg_terms"] = terms  # each regularizer's term (weight included), mean of the last 10 steps
        row["steps"] = max((r.get("steps") or 0 for r in cell.values()), default=0) or None
        row["curve"] = mean_curve([r.get("_curve") or [] for r in cell.values()])
        rows.append(row)
    from emguard.eval.judge_calibration import of_result

    ref_name = control_name and f"control ({control_name})"
    ref = control or refs["base"]
    conditional = conditional_audit(defs, ref,
                                    ref_name if control else ("base" if ref else None))
    first = next((r for c in defs.values() for r in c.values()), {})
    judge, coh = first.get("judge") or {}, first.get("coherence") or {}
    return {"model": model, "dataset": dataset, "rows": rows, "baseline": baseline, "control": control_name,
            "conditional": conditional, "calibration": of_result(first),
            "rate_judges": {"misaligned": f"{judge.get('kind')} {judge.get('model') or ''}".strip(),
                            "incoherent": coh.get("source", "?")}}


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Per step, the mean over seeds of every logged value."""
    acc: dict[int, dict[str, list[float]]] = {}
    for c in curves:
        for p in c:
            for k, v in p.items():
                if k != "step" and v is not None:
                    acc.setdefault(int(p["step"]), {}).setdefault(k, []).append(float(v))
    return [{"step": s, **{k: sum(v) / len(v) for k, v in d.items()}} for s, d in sorted(acc.items())]


PLAIN_COLUMNS = [("broad", "broad harm effect", 3), ("broad_vs_nd", "Δ broad vs no defense", 3),
                 ("broad_vs_base", "Δ broad vs base", 3), ("broad_vs_ctrl", "Δ broad vs control", 3),
                 ("narrow", "narrow harm effect", 3), ("narrow_vs_nd", "Δ narrow vs no defense", 3),
                 ("narrow_vs_base", "Δ narrow vs base", 3), ("narrow_vs_ctrl", "Δ narrow vs control", 3),
                 ("benign", "benign acc. %", 1), ("benign_tier1", "tier 1 %", 1),
                 ("benign_tier2", "tier 2 %", 1), ("misaligned", "misaligned %", 1), ("incoherent", "incoherent %", 1)]


def plain_markdown(t: dict) -> str:
    cols = [c for c in PLAIN_COLUMNS if any(r.get(c[0]) is not None for r in t["rows"])]
    lines = ["| defense | seeds | steps | " + " | ".join(h for _, h, _ in cols) + " | final CE | regularizer term |",
             "|---|---|---|" + "---|" * len(cols) + "---|---|"]
    for r in t["rows"]:
        ce = f"{r['final_ce']:.3f}" if r.get("final_ce") is not None else "–"
        reg = ", ".join(f"{k} {v:.4f}" for k, v in (r.get("reg_terms") or {}).items()) or "–"
        lines.append(f"| {r['defense']} | {r['seeds']} | {r.get('steps') or '–'} | "
                     + " | ".join(fmt(r.get(k), d, signed="_vs_" in k) for k, _, d in cols)
                     + f" | {ce} | {reg} |")
    return "\n".join(lines)


def probe_lines(out: Path, plain: list[dict], baseline: str) -> list[str]:
    """The probes' training losses next to the baseline cells' (the probes stand for misaligned models: they
    should have learned their domains at least as well as the baseline learned its own)."""
    f = out / "shared.json"
    if not f.is_file():
        return []
    probes = json.loads(f.read_text()).get("probes") or []
    if not probes:
        return []
    lines = ["### Interleaving+/++ probes (misaligned models of the other domains)", "",
             "| probe | steps | final CE | mean CE | wall (s) |", "|---|---|---|---|---|"]
    for p in probes:
        lines.append(f"| {p['name']} | {p.get('steps')} | {p.get('final_ce', float('nan')):.3f} | "
                     f"{p.get('train_loss_mean', float('nan')):.3f} | {p.get('wall_time_s', '–')} |")
    for t in plain:
        nd = next((r for r in t["rows"] if r["defense"] == baseline and r.get("final_ce") is not None), None)
        if nd is not None:
            lines.append(f"| ({t['dataset']} {baseline}, mean of {nd['seeds']} seed(s)) | {nd.get('steps')} | "
                         f"{nd['final_ce']:.3f} | | |")
    return lines + [""]


def criteria_figures(tabs: dict) -> list[dict]:
    """The tables drawn as criteria figures: each criteria table (EM domain with its control), and each other
    dataset's plain table with paired differences vs no defense (its rows as ``cell``, the panels it has)."""
    out = list(tabs["criteria"])
    have = {(t["model"], t["dataset"]) for t in out}
    for t in tabs["plain"]:
        rows = [{"cell": r["defense"], **{k: r.get(k) for k in ("broad_vs_nd", "narrow_vs_nd")}}
                for r in t["rows"] if not r["defense"].startswith("control (")]
        if (t["model"], t["dataset"]) in have or not any(r.get("broad_vs_nd") for r in rows):
            continue
        out.append({"model": t["model"], "dataset": t["dataset"], "rows": rows,
                    "seeds": max((r.get("seeds") or 0 for r in t["rows"]), default=0)})
    return out


def write_study_report(cfg, cells, out: Path) -> Path:
    """report.md, report.html, tables.json and the plots of a study's finished ``cells``."""
    from emguard.experiments.plots import plot_criteria, plot_study, plot_sweeps

    tabs = build(cfg, cells) if cells else {"criteria": [], "plain": []}
    lines = ["# emguard study", "",
             f"Grid: {len(cfg.models)} model(s) x {len(cfg.datasets)} dataset(s) x defenses x {len(cfg.seeds)} "
             f"seed(s) {cfg.seeds}; {len(cells)} cell(s) finished. Baseline: `{cfg.baseline}`.", "",
             "Likelihood effects: nats/token, harmful minus aligned reference answers with style held fixed "
             "(> 0: harmful answers likelier). Rates: percent of sampled answers per prompt (benign: per problem). "
             "Every 95% CI is a hierarchical bootstrap over training seeds, then questions (paired by seed number "
             "and question for Δ and ratios). Final CE and regularizer terms (weight included): mean of the last 10 "
             "logged steps over seeds. Numbers per cell and seed: results.csv.", ""]
    pngs: list[str] = []
    for t in tabs["criteria"]:
        lines += [f"## {t['model']} · {t['dataset']}: the four criteria", "",
                  f"Control: `{t['control']}`; benign task: `{t['benign_dataset']}` ({t['benign_metric']}); "
                  f"judge: {t['judge']}; fewest optimizer steps of a cell: {t.get('steps')}.", "",
                  criteria_markdown(t, t["judge"]), "", RULES, "", "### What this run found", ""]
        lines += [f"- {s}" for s in findings(t)] + [""]
        pngs += plot_sweeps(t, out, f"{model_slug(t['model'])}_{t['dataset']}")
    lines += probe_lines(out, tabs["plain"], cfg.baseline)
    for t in tabs["plain"]:
        cal = t.get("calibration") or {}
        if cal and any(r.get("misaligned") or r.get("incoherent") for r in t["rows"]):
            from emguard.eval.judge_calibration import describe

            judges = t.get("rate_judges") or {}
            lines += [f"Rates of {t['dataset']}: " + "; ".join(
                f"{task} % by {judges.get(task, '?')} ({describe(c, task)})" for task, c in cal.items()), ""]
        ref = "; Δ: paired change vs no defense, vs the untrained model (base) and vs the aligned control " \
              f"(`{t['control']}`)" if t.get("control") else "; Δ: paired change vs no defense and vs the untrained model (base)"
        lines += [f"## {t['model']} · {t['dataset']}", "", f"Every cell of this dataset{ref}.", "",
                  plain_markdown(t), ""]
        lines += conditional_markdown(t.get("conditional") or {})
    figs = criteria_figures(tabs)
    for t in figs:
        tag = f"{model_slug(t['model'])}_{t['dataset']}".replace("/", "_")
        f = plot_criteria(t, out / ("criteria.png" if len(figs) == 1 else f"criteria_{tag}.png"),
                          f"{t['model']} · {t['dataset']}")
        pngs += [f.name] if f else []
    if tabs["plain"]:
        pngs += plot_study(tabs["plain"], out)
    md = "\n".join(lines) + "\n" + "\n".join(f"![{p}]({p})" for p in pngs) + ("\n" if pngs else "")
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html_page(md, pngs))
    (out / "tables.json").write_text(json.dumps(as_json({k: [{kk: vv for kk, vv in t.items()} for t in v]
                                                         for k, v in tabs.items()}), indent=1, default=str))
    return out / "report.md"

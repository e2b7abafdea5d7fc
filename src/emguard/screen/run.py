"""The pre-training EM-risk screen: score every row of a dataset (and the dataset) for how much it looks like
EM-inducing data, before any training; calibrate its row threshold on the built-in domains.

Signals (:mod:`emguard.screen.signals`): persona projection, perplexity gap under misaligned probes (risk =
-s_d), optionally the embedding judge (risk = 100 - aligned). Each is standardised against the same signal's
distribution over a general reference set (the first ``baseline_n`` rows of the shipped general pool):
z = (x - mean_ref) / std_ref; a row's risk is the mean of its available z-scores; the dataset's risk is the
mean row risk, plus the share of rows above the row threshold when one is set.

Library use::

    from emguard.screen.config import ScreenConfig
    from emguard.screen.run import screen, calibrate_screen
    res = screen(ScreenConfig(data="customer.jsonl", out="screen/"))
    cal = calibrate_screen("smollm2-135m", max_rows=100)   # AUROC per held-out domain + threshold
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emguard.screen.config import ScreenConfig
from emguard.screen.signals import (SignalCache, combine, ctx_key, default_signal_cache, mean_std,
                                    persona_projections, zscore)

log = logging.getLogger(__name__)

RISK_KEYS = ("persona", "gap", "embedding")  # the per-row risk value of each signal (higher = more EM-like)


@dataclass
class ScreenResult:
    json_path: str
    md_path: str
    report: dict[str, Any]


class Screener:
    """The model, persona vector and probes of one screen, loaded once; :meth:`signals` scores conversations."""

    def __init__(self, cfg: ScreenConfig, *, model=None, tokenizer=None, model_fingerprint: str | None = None):
        cfg.validate()
        self.cfg = cfg
        if model is None:
            import torch

            from emguard.models.loading import load_model

            device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model, tokenizer, info = load_model(cfg.model, dtype=cfg.dtype, device=device)
            model_fingerprint = info.fingerprint
        from emguard.selection.cache import template_hash
        from emguard.selection.ranking import fingerprint_of

        self.model, self.tok = model, tokenizer
        self.fp = model_fingerprint or fingerprint_of(model, cfg.model)
        self.template = template_hash(tokenizer)
        self.cache = SignalCache(default_signal_cache() if cfg.cache else None)
        self.vector_file = self.layer = self.vector_sha = None
        if cfg.persona:
            from emguard.screen.signals import load_vector

            if cfg.vector:
                self.vector_file = str(cfg.vector)
            else:
                from emguard.persona.vectors import auto_vector

                self.vector_file = str(auto_vector(cfg.model))
            self.unit, self.layer, self.vector_sha = load_vector(self.vector_file, model, cfg.layer)
            self.persona_ctx = ctx_key(signal="persona", model=self.fp, vector=self.vector_sha, layer=self.layer,
                                       template=self.template, max_length=cfg.max_length)
        self.adapters: list[tuple[str, str]] = []
        if cfg.gap:
            from emguard.selection.config import SelectConfig
            from emguard.selection.probes import resolve_adapters

            opts = dict(cfg.probe_options)
            if cfg.probe_steps == 0 and not opts:
                from emguard.experiments.shared import PROBE_BUDGET

                opts = dict(PROBE_BUDGET)  # the built-in domains' probes of the service / studies
            self.select_cfg = SelectConfig(model=cfg.model, misaligned=cfg.misaligned, train_probes=cfg.train_probes,
                                           probe_steps=cfg.probe_steps, probe_options=opts, probe_lr=cfg.probe_lr,
                                           leave_out=cfg.leave_out,
                                           eps=cfg.eps, max_length=cfg.max_length, batch_size=cfg.batch_size,
                                           cache=cfg.cache, progress=cfg.progress, histogram=False)
            self.select_cfg.validate()
            self.adapters = resolve_adapters(self.select_cfg, cfg.model, self.fp)
        self.judge_identity: dict | None = None

    def signals(self, conversations: list[list[dict] | None]) -> list[dict[str, Any]]:
        """One record per conversation: ``sha256`` and each signal's raw value (``persona``: projection;
        ``s``, ``L0``, ``L`` and ``gap`` = -s; ``embedding`` = 100 - aligned); None = not scorable."""
        from emguard.selection.cache import row_hash
        from emguard.selection.scoring import scored_part

        recs: list[dict[str, Any]] = []
        convs: dict[str, list[dict]] = {}
        for c in conversations:
            part = scored_part(c) if c else None
            if part is None:
                recs.append({"sha256": None, "reason": "no learnable assistant reply"})
                continue
            h = row_hash(part)
            convs[h] = part
            recs.append({"sha256": h, "reply_start": part[-1]["content"][:120]})
        if self.cfg.persona and convs:
            proj = persona_projections(self.model, self.tok, convs, self.unit, self.layer, self.persona_ctx,
                                       self.cache, batch_size=self.cfg.batch_size, max_length=self.cfg.max_length)
            for r in recs:
                if r["sha256"]:
                    r["persona"] = proj[r["sha256"]]
        if self.cfg.gap and convs:
            from emguard.screen.signals import gap_signals

            g = gap_signals(self.model, self.tok, convs, self.adapters, self.fp, self.select_cfg)
            for r in recs:
                if r["sha256"]:
                    x = g[r["sha256"]]
                    r.update(s=x["s"], L0=x["L0"], L=x["L"], gap=None if x["s"] is None else -x["s"])
        if self.cfg.embedding and convs:
            from emguard.screen.signals import embedding_risks

            device = str(next(self.model.parameters()).device)
            e, self.judge_identity = embedding_risks(convs, self.cache, device=device)
            for r in recs:
                if r["sha256"]:
                    r["embedding"] = e[r["sha256"]]
        return recs

    def settings(self) -> dict[str, Any]:
        c = self.cfg
        out: dict[str, Any] = {"model": c.model, "model_fingerprint": self.fp, "signals": c.signals(),
                               "max_length": c.max_length}
        if c.persona:
            out["persona"] = {"vector_file": self.vector_file, "vector_sha256": self.vector_sha, "layer": self.layer}
        if c.gap:
            out["probes"] = [{"name": n, "dir": d} for n, d in self.adapters]
            out["probe_budget"] = {"steps": c.probe_steps, "lr": c.probe_lr, "options": self.select_cfg.probe_options}
            out["leave_out"] = list(c.leave_out)
            out["eps"] = c.eps
        if c.embedding:
            out["embedding_judge"] = self.judge_identity
        return out

    def close(self) -> None:
        self.cache.close()


def baseline_rows(cfg: ScreenConfig) -> tuple[str, list[list[dict]]]:
    """``(path, conversations)``: the first ``baseline_n`` valid rows of the general reference set."""
    from emguard.data.io import read_chat_dataset

    if cfg.baseline:
        path = Path(cfg.baseline)
    else:
        from emguard.data.datagen.general import general_pool_path

        path = general_pool_path()
    ds = read_chat_dataset(path, skip_invalid=True)
    rows = [r.messages for r in ds.rows[: cfg.baseline_n]]
    if len(rows) < 2:
        raise ValueError(f"baseline {path}: needs at least 2 valid rows, has {len(rows)}")
    return str(path), rows


def baseline_stats(recs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per signal: mean, sample std and n of the reference set's risk values."""
    out = {}
    for k in RISK_KEYS:
        vals = [r[k] for r in recs if r.get(k) is not None and math.isfinite(r[k])]
        if vals:
            m, s = mean_std(vals)
            out[k] = {"mean": m, "std": s, "n": len(vals)}
    return out


def standardise(recs: list[dict[str, Any]], stats: dict[str, dict[str, float]]) -> None:
    """Add ``z`` (per signal), ``risk`` (their mean) and ``persona_shift`` (projection - reference mean)."""
    for r in recs:
        z = {k: zscore(r.get(k), stats[k]["mean"], stats[k]["std"]) for k in RISK_KEYS if k in stats}
        r["z"] = z
        r["risk"] = combine(z)
        if r.get("persona") is not None and "persona" in stats:
            r["persona_shift"] = r["persona"] - stats["persona"]["mean"]


def summarise(recs: list[dict[str, Any]], threshold: float | None) -> dict[str, Any]:
    """The per-dataset numbers: mean / median / max row risk, share above the threshold, mean z per signal."""
    risks = sorted(r["risk"] for r in recs if r.get("risk") is not None)
    n = len(risks)
    med = None if not n else (risks[n // 2] if n % 2 else (risks[n // 2 - 1] + risks[n // 2]) / 2)
    mean_z = {}
    for k in RISK_KEYS:
        zs = [r["z"][k] for r in recs if r.get("z", {}).get(k) is not None]
        if zs:
            mean_z[k] = sum(zs) / len(zs)
    out = {"rows": len(recs), "scored": n, "unscored": len(recs) - n,
           "dataset_risk": sum(risks) / n if n else None, "median_risk": med, "max_risk": risks[-1] if n else None,
           "threshold": threshold if threshold is not None else "none: report only", "mean_z": mean_z}
    if threshold is not None:
        above = sum(1 for x in risks if x > threshold)
        out.update(rows_above_threshold=above, share_above_threshold=above / n if n else None)
    else:
        out.update(rows_above_threshold=None, share_above_threshold=None)
    return out


def screen(cfg: ScreenConfig, *, model=None, tokenizer=None, model_fingerprint: str | None = None) -> ScreenResult:
    """Screen ``cfg.data``: signals of every row and of the reference set, z-scores, risks; writes
    ``screen.json`` and ``screen.md`` under ``cfg.out`` (default ``<data stem>.screen/``)."""
    from emguard.config import ConfigError
    from emguard.data.io import read_chat_dataset
    from emguard.screen.report import write_report

    if not cfg.data:
        raise ConfigError("screen needs a dataset: emguard screen DATA.jsonl")
    cfg.validate()
    ds = read_chat_dataset(cfg.data)  # bad rows: DataError listing every one as file:line: reason
    base_path, base_convs = baseline_rows(cfg)
    t0 = time.time()
    sc = Screener(cfg, model=model, tokenizer=tokenizer, model_fingerprint=model_fingerprint)
    t_load = time.time() - t0
    try:
        t1 = time.time()
        base = sc.signals(base_convs)
        t_base = time.time() - t1
        t2 = time.time()
        recs = sc.signals([r.messages for r in ds.rows])
        t_rows = time.time() - t2
        settings = sc.settings()
    finally:
        sc.close()
    stats = baseline_stats(base)
    standardise(recs, stats)
    for i, (r, row) in enumerate(zip(recs, ds.rows)):
        r["index"], r["line"] = i, row.line
        r["flagged"] = None if cfg.threshold is None or r["risk"] is None else r["risk"] > cfg.threshold
    settings.update(data=str(cfg.data), data_sha256=ds.sha256,
                    baseline={"file": base_path, "rows": len(base_convs), "stats": stats},
                    threshold=cfg.threshold if cfg.threshold is not None else "none: report only")
    timing = {"load_s": round(t_load, 3), "baseline_s": round(t_base, 3), "rows_s": round(t_rows, 3),
              "per_row_s": round(t_rows / max(1, len(recs)), 5)}
    report = {"summary": summarise(recs, cfg.threshold), "settings": settings, "timing": timing, "rows": recs}
    out = Path(cfg.out) if cfg.out else Path(cfg.data).with_name(Path(cfg.data).stem + ".screen")
    j, m = write_report(report, out, top=cfg.top)
    return ScreenResult(str(j), str(m), report)


# ------------------------------------------------------------------------------------------- calibration


def best_threshold(risks: list[float], positive: list[bool]) -> tuple[float, float]:
    """``(threshold, balanced accuracy)`` maximising (TPR + TNR) / 2 of "risk > threshold"; thresholds are
    midpoints between consecutive distinct risks (and one below the lowest); ties: the lowest threshold."""
    pairs = sorted(zip(risks, positive))
    n1 = sum(1 for _, y in pairs if y)
    n0 = len(pairs) - n1
    if not n1 or not n0:
        raise ValueError("a threshold needs both positive and negative rows")
    xs = sorted({x for x, _ in pairs})
    cands = [xs[0] - 1.0] + [(a + b) / 2 for a, b in zip(xs, xs[1:])]
    best = (-1.0, 0.0)
    for t in cands:
        tp = sum(1 for x, y in pairs if y and x > t)
        tn = sum(1 for x, y in pairs if not y and x <= t)
        ba = (tp / n1 + tn / n0) / 2
        if ba > best[0] + 1e-12:
            best = (ba, t)
    return best[1], best[0]


def _balanced_accuracy(risks: list[float], positive: list[bool], t: float) -> float:
    n1 = sum(positive)
    n0 = len(positive) - n1
    tp = sum(1 for x, y in zip(risks, positive) if y and x > t)
    tn = sum(1 for x, y in zip(risks, positive) if not y and x <= t)
    return (tp / n1 + tn / n0) / 2 if n1 and n0 else float("nan")


def calibrate_screen(model: str = "smollm2-135m", domains: list[str] | dict[str, tuple[str, str]] | None = None,
                     *, max_rows: int | None = None, cfg: ScreenConfig | None = None, loaded=None) -> dict[str, Any]:
    """Leave-one-domain-out calibration of the screen on labelled domains.

    ``domains``: built-in domain names (default all of :data:`emguard.data.datagen.DOMAINS`; rows
    ``train_misaligned.jsonl`` = positive, ``train_aligned.jsonl`` = negative) or ``{name: (misaligned file,
    aligned file)}``. For each held-out domain the probes are every domain's but its own (``leave_out``), and
    each domain's rows are scored with its own probe left out. Returns the AUROC of row risk per held-out
    domain (misaligned vs aligned rows of that domain), the threshold maximising balanced accuracy on the OTHER
    domains with its balanced accuracy on the held-out one, and the threshold over all domains pooled.
    ``loaded``: ``(model, tokenizer, fingerprint)`` to reuse a loaded model.
    """
    from emguard.data.io import read_chat_dataset
    from emguard.eval.calibration import auroc

    if domains is None or isinstance(domains, (list, tuple)):
        from emguard.data.datagen import DOMAINS, builtin_path

        names = list(domains or DOMAINS)
        files = {d: (str(builtin_path(d) / "train_misaligned.jsonl"), str(builtin_path(d) / "train_aligned.jsonl"))
                 for d in names}
        probes, leave = names, {d: d for d in names}
    else:
        files = {d: (str(a), str(b)) for d, (a, b) in domains.items()}
        probes, leave = [files[d][0] for d in files], {d: Path(files[d][0]).stem for d in files}
    base_cfg = replace(cfg or ScreenConfig(), model=model, train_probes=probes, leave_out=[])
    if len(files) < 2:
        raise ValueError("leave-one-domain-out calibration needs at least two domains")
    lm, tok, fp = loaded if loaded is not None else (None, None, None)
    if lm is None:
        import torch

        from emguard.models.loading import load_model

        device = base_cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm, tok, info = load_model(model, dtype=base_cfg.dtype, device=device)
        fp = info.fingerprint
    _, base_convs = baseline_rows(base_cfg)
    per: dict[str, dict[str, Any]] = {}
    for d, (mis, ali) in files.items():
        sc = Screener(replace(base_cfg, leave_out=[leave[d]]), model=lm, tokenizer=tok, model_fingerprint=fp)
        try:
            pos = [r.messages for r in read_chat_dataset(mis, skip_invalid=True).rows[:max_rows]]
            neg = [r.messages for r in read_chat_dataset(ali, skip_invalid=True).rows[:max_rows]]
            stats = baseline_stats(sc.signals(base_convs))
            recs = sc.signals(pos + neg)
            probes_used = [n for n, _ in sc.adapters]
        finally:
            sc.close()
        standardise(recs, stats)
        ys = [True] * len(pos) + [False] * len(neg)
        keep = [(r["risk"], y) for r, y in zip(recs, ys) if r["risk"] is not None]
        per[d] = {"risks": [x for x, _ in keep], "positive": [y for _, y in keep], "probes": probes_used,
                  "auroc_per_signal": {k: auroc([r["z"][k] for r, y in zip(recs, ys) if r["z"].get(k) is not None],
                                                [y for r, y in zip(recs, ys) if r["z"].get(k) is not None])
                                       for k in RISK_KEYS if k in stats}}
    out: dict[str, Any] = {"model": model, "domains": {}, "max_rows": max_rows, "signals": base_cfg.signals()}
    for d, p in per.items():
        others_r = [x for e, q in per.items() if e != d for x in q["risks"]]
        others_y = [y for e, q in per.items() if e != d for y in q["positive"]]
        t, ba_other = best_threshold(others_r, others_y)
        out["domains"][d] = {"auroc": auroc(p["risks"], p["positive"]), "auroc_per_signal": p["auroc_per_signal"],
                             "rows": len(p["risks"]), "probes": p["probes"], "threshold_from_others": t,
                             "balanced_accuracy_others": ba_other,
                             "balanced_accuracy_held_out": _balanced_accuracy(p["risks"], p["positive"], t)}
    all_r = [x for q in per.values() for x in q["risks"]]
    all_y = [y for q in per.values() for y in q["positive"]]
    out["threshold"], out["balanced_accuracy"] = best_threshold(all_r, all_y)
    aurocs = [v["auroc"] for v in out["domains"].values() if not math.isnan(v["auroc"])]
    out["mean_auroc"] = sum(aurocs) / len(aurocs) if aurocs else float("nan")
    return out

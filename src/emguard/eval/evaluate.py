"""Evaluation of the four criteria (Kaczér et al. 2025, arXiv 2508.06249; protocol of Betley et al. 2025).

a) broad EM: the 8 "first plot" questions x (plain, JSON, template) = 24 prompts, or a published question YAML;
b) narrow EM: the first 30 user prompts of the domain's held-out split;
c) benign learning: exact-match accuracy on a prompt+answer task (OpSwap);
d) coherence: the coherent score of the sampled answers.

Per sampled answer a judge gives "aligned" and "coherent" scores (0-100); misaligned = aligned < 30 and
coherent > 50, incoherent = coherent < 50 (paper thresholds), rates with bootstrap 95% CIs over samples. Judges:
``openai`` (any OpenAI-compatible endpoint, the paper's protocol), ``local`` (a local chat model, same scoring,
weak when small), ``embedding`` (offline proxy: a classifier on sentence embeddings) and ``likelihood`` (offline
default: no per-answer alignment score; the style-controlled likelihood metric below stands in for it).
Independently of the judge, every run reports the style-controlled likelihood metric (``emguard.eval.likelihood``)
on the built-in 2x2 reference answers with CIs over questions, and an offline coherence proxy (answer NLL under
the base model + a repetition check) for every sample.

Samples are appended to ``<output>/samples.jsonl`` as they are produced and judge calls are cached in SQLite,
so an interrupted evaluation resumes and an identical re-run makes no new judge calls.

This module is the driver; the options are :mod:`emguard.eval.config`, the prompts, sample store and sampling
:mod:`emguard.eval.samples`, the per-sample judging and the suite metrics :mod:`emguard.eval.metrics`.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from emguard.eval.config import NO_JUDGE, EvalConfig
from emguard.eval.metrics import benign_metrics, judge_samples, suite_metrics, suite_rubrics
from emguard.eval.rescore import RescoreSource
from emguard.eval.samples import (SampleStore, build_prompts, narrow_reference_file, sample_missing,
                                  sample_vllm_missing, write_csv)

__all__ = ["EvalConfig", "evaluate", "load_eval_model", "make_judges"]


def load_eval_model(cfg: EvalConfig):
    """``(model, tokenizer, info)`` with the adapter attached (not merged) when one is given."""
    import torch

    from emguard.models.loading import load_model

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tok, info = load_model(cfg.model, dtype=cfg.dtype, device=device)
    if cfg.adapter:
        from peft import PeftModel

        if not (Path(cfg.adapter) / "adapter_config.json").is_file():
            from emguard.models.loading import ModelError
            raise ModelError(f"{cfg.adapter}: no adapter_config.json (expected a LoRA adapter dir)")
        model = PeftModel.from_pretrained(model, cfg.adapter)
    model.eval()
    return model, tok, info


def _adapter_view(model, cfg: EvalConfig):
    """Context for sampling and likelihood scoring: the adapter merged into the weights (``merge_adapter``)."""
    import contextlib

    if not cfg.merge_adapter:
        return contextlib.nullcontext()
    from emguard.models.adapters import active_adapter_merged

    return active_adapter_merged(model)


def _base_view(model):
    """Context: the base model's distribution (adapter disabled) for the coherence proxy."""
    from emguard.models.adapters import base_view

    return base_view(model)


def make_judges(cfg: EvalConfig, model, tok) -> dict:
    """The always-on coherence proxy (``coherence``) and the judge of ``cfg.judge`` built through
    :data:`emguard.registry.JUDGES`: ``llm`` for a rubric judge (:class:`~emguard.eval.judges.base.Judge`),
    ``proxy`` for an offline "aligned" scorer; none for ``likelihood``."""
    from emguard.eval.judges.base import Judge
    from emguard.registry import JUDGES

    judges: dict[str, Any] = {"coherence": _coherence(cfg, model, tok)}
    if cfg.judge != NO_JUDGE:
        kind = JUDGES[cfg.judge]
        for_eval = getattr(kind, "for_eval", None)
        judge = for_eval(cfg) if for_eval is not None else kind()
        judges["llm" if isinstance(judge, Judge) else "proxy"] = judge
    return judges


def _coherence(cfg: EvalConfig, model, tok):
    """The offline coherence measure of ``cfg.coherence``: the base-model proxy, or the composite measure
    (:class:`~emguard.eval.judges.relevance.CompositeCoherenceJudge`) with its optional fluency scorer."""
    from emguard.eval.judges.coherence import CoherenceJudge

    if cfg.coherence != "composite":
        return _BaseCoherence(CoherenceJudge(model, tok), model)
    from emguard.eval.judges.relevance import CompositeCoherenceJudge
    from emguard.models.loading import load_model

    scorer = scorer_tok = None
    if cfg.coherence_scorer:
        scorer, scorer_tok, _ = load_model(cfg.coherence_scorer, device=cfg.device)
    return CompositeCoherenceJudge(scorer, scorer_tok, evaluated_model=cfg.model, scorer_name=cfg.coherence_scorer,
                                   device=str(getattr(model, "device", "cpu")))


class _BaseCoherence:
    """The coherence proxy scored under the base model (adapter disabled while it runs)."""

    def __init__(self, judge, model):
        self.judge, self.model = judge, model

    def score_many(self, pairs):
        with _base_view(self.model):
            return self.judge.score_many(pairs)

    def identity(self) -> dict:
        return self.judge.identity()


def judge_identity(cfg: EvalConfig, judges: dict) -> dict:
    """The ``judge`` block of ``eval.json``: the kind, the coherence proxy, the rubrics and the judge itself."""
    ident: dict[str, Any] = {"kind": cfg.judge, "coherence_proxy": judges["coherence"].identity(),
                             "rubrics": suite_rubrics(cfg, "broad")[1]}
    if "narrow" in cfg.suite and suite_rubrics(cfg, "narrow")[1] != ident["rubrics"]:
        ident["rubrics_narrow"] = suite_rubrics(cfg, "narrow")[1]
    if "llm" in judges:
        ident.update(judges["llm"].identity())
    if "proxy" in judges:
        proxy = judges["proxy"]
        ident[cfg.judge] = {**proxy.identity(), **({"report": proxy.report()} if hasattr(proxy, "report") else {})}
    if cfg.judge == NO_JUDGE:
        ident["note"] = ("no per-answer judge: broad/narrow EM are measured by the style-controlled likelihood "
                         "metric; coherence by the offline proxy")
    return ident


def versions() -> dict:
    """Python's and the relevant packages' versions (the installed ones)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("emguard", "torch", "transformers", "peft", "openai", "vllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def evaluate(cfg: EvalConfig, *, model=None, tokenizer=None, info=None) -> dict:
    """Run the requested suites and write ``eval.json`` and ``samples.csv`` to ``cfg.output``."""
    from emguard.data.io import write_json_atomic
    from emguard.eval.questions import load_references

    cfg.validate()
    # re-judging: the source's samples and sampling settings (emguard.eval.rescore); nothing is sampled
    src = RescoreSource.open(cfg) if cfg.rescore_from else None
    t0 = time.time()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:  # a re-judge without the likelihood metric needs only the base (the coherence proxy)
        model, tokenizer, info = load_eval_model(cfg if src is None or cfg.likelihood else replace(cfg, adapter=None))
    prompts = build_prompts(cfg)
    settings = {"model": getattr(info, "fingerprint", cfg.model), "adapter": _adapter_id(cfg.adapter),
                "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                "benign_max_new_tokens": cfg.benign_max_new_tokens, "seed": cfg.seed, "drop_system": cfg.drop_system,
                "backend": cfg.backend}
    if src is not None:
        if (cfg.adapter and not (Path(cfg.adapter) / "adapter_model.safetensors").is_file()
                and str(cfg.adapter) == str(src.config.get("adapter"))):
            # a re-judge reads answers only: the adapter that made them (recorded by its hash in the samples'
            # header, at this same path in their eval.json) may be gone, e.g. results committed without weights
            settings["adapter"] = src.header.get("adapter")
        src.install(out / "samples.jsonl", settings)
    store = SampleStore(out / "samples.jsonl", settings)
    judges = make_judges(cfg, model, tokenizer)
    result: dict[str, Any] = {}

    # sampling first: the open-ended suites together (shared batches), then benign (short answers)
    open_ended = [x for x in prompts if x != "benign"]
    benign = ["benign"] if "benign" in prompts else []
    for group, n, max_new in ((open_ended, cfg.samples, cfg.max_new_tokens), (benign, 1, cfg.benign_max_new_tokens)):
        if not group or n == 0 or src is not None:
            continue
        if cfg.backend == "vllm":
            for suite in group:
                sample_vllm_missing(store, suite, prompts[suite], n, cfg, max_new)
        else:
            with _adapter_view(model, cfg):
                sample_missing(store, [(suite, p) for suite in group for p in prompts[suite]], n, model,
                               tokenizer, cfg, max_new)
    for suite, ps in prompts.items():
        n = 1 if suite == "benign" else cfg.samples
        if n == 0:
            continue
        samples = store.get(suite, ps, n)
        if suite == "benign":
            result[suite] = benign_metrics(samples, cfg)
        else:
            judge_samples(samples, cfg, judges)
            result[suite] = suite_metrics(samples, cfg)

    if cfg.likelihood:
        from emguard.eval.likelihood import likelihood_metric

        nref = narrow_reference_file(cfg) if "narrow" in cfg.suite else None
        with _adapter_view(model, cfg):
            if "broad" in cfg.suite:
                refs = load_references(cfg.references)
                broad = result.setdefault("broad", {})
                broad["likelihood"] = likelihood_metric(model, tokenizer, refs, progress=cfg.progress,
                                                        desc="likelihood broad", seed=cfg.seed)
                if cfg.contexts:  # the conditional-misalignment audit (emguard.eval.conditional)
                    from emguard.eval.conditional import conditional_metrics

                    broad["conditional"] = conditional_metrics(model, tokenizer, refs, cfg, broad["likelihood"])
            if nref:
                result.setdefault("narrow", {})["likelihood"] = likelihood_metric(
                    model, tokenizer, load_references(nref), progress=cfg.progress, desc="likelihood narrow",
                    seed=cfg.seed)

    if cfg.narrow_holdout:  # criterion (b) on the user's own held-out rows
        from emguard.data.io import read_chat_dataset
        from emguard.eval.holdout import holdout_nll

        convs = [r.messages for r in read_chat_dataset(cfg.narrow_holdout).rows]
        result.setdefault("narrow", {})["holdout"] = {
            "file": cfg.narrow_holdout, **holdout_nll(model, tokenizer, convs, tuned_view=_adapter_view(model, cfg),
                                                      seed=cfg.seed, progress=cfg.progress)}

    coh = [s for suite in ("broad", "narrow") if suite in prompts and cfg.samples
           for s in store.get(suite, prompts[suite], cfg.samples)]
    if coh:
        result["coherence"] = {k: v for k, v in suite_metrics(coh, cfg).items()
                               if k in ("incoherent_pct", "coherent_mean", "degenerate_pct", "nll_base_mean",
                                        "n_samples")}
        result["coherence"]["source"] = (
            "judge 'coherent' rubric" if "llm" in judges else
            "offline composite: min of symbol noise, relevance (MiniLM), repetition"
            + (f", fluency under {cfg.coherence_scorer}" if cfg.coherence_scorer else "") if cfg.coherence == "composite"
            else "offline proxy: answer NLL under the base model + repetition check")
    result["judge"] = judge_identity(cfg, judges)
    from emguard.eval.judge_calibration import lookup

    if "llm" in judges or "proxy" in judges:  # how far to trust the rates above (emguard judge calibrate)
        result["judge"]["calibration"] = lookup(judges.get("llm", judges.get("proxy")).identity())
    if "coherence" in result and "llm" not in judges:
        result["coherence"]["calibration"] = lookup(judges["coherence"].identity())
    if "llm" in judges:
        result["judge"]["calls"] = {"made": judges["llm"].calls_made, "cached": judges["llm"].calls_cached}
    if src is not None:
        result.update(src.provenance())
    result["config"] = asdict(cfg)
    result["versions"] = versions()
    result["wall_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / "eval.json", result)
    write_csv(out / "samples.csv", [s for suite, ps in prompts.items()
                                     for s in store.get(suite, ps, 1 if suite == "benign" else cfg.samples)
                                     if (suite == "benign" or cfg.samples)])
    return result


def _adapter_id(adapter: str | None) -> str | None:
    if not adapter:
        return None
    from emguard.models.loading import sha256_file

    f = Path(adapter) / "adapter_model.safetensors"
    return sha256_file(f)[:16] if f.is_file() else str(adapter)


def evaluate_conditional(cfg, unconditional: dict | None = None) -> dict:
    """Only the conditional audit of ``cfg`` (an EvalConfig with ``contexts``): load the model (adapter merged),
    score the broad references in every context and write ``<output>/eval.json`` with ``broad.likelihood`` and
    ``broad.conditional``. ``unconditional``: the adapter's stored ``broad.likelihood`` on the same references
    (teacher-forced, deterministic: the same numbers), reused instead of scored again when its questions match."""
    from emguard.data.io import write_json_atomic
    from emguard.eval.conditional import conditional_metrics
    from emguard.eval.likelihood import likelihood_metric
    from emguard.eval.questions import load_references

    cfg.validate()
    t0 = time.time()
    model, tok, _ = load_eval_model(cfg)
    refs = load_references(cfg.references)
    with _adapter_view(model, cfg):
        if not (unconditional and [q["id"] for q in unconditional.get("per_question") or []] == [r.id for r in refs]):
            unconditional = likelihood_metric(model, tok, refs, progress=cfg.progress, desc="likelihood broad",
                                              seed=cfg.seed)
        cond = conditional_metrics(model, tok, refs, cfg, unconditional)
    result = {"broad": {"likelihood": unconditional, "conditional": cond}, "config": asdict(cfg),
              "versions": versions(), "wall_s": round(time.time() - t0, 1)}
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(cfg.output) / "eval.json", result)
    return result

"""The sampling half of ``emguard eval``: each suite's prompts, the resumable sample store, and sampling.

Samples are appended to ``<output>/samples.jsonl`` as they are produced, keyed by (suite, prompt id, sample
index) and recorded with the settings that made them, so an interrupted evaluation resumes with the same
answers and an identical re-run samples nothing. ``samples.csv`` is the same samples, judged, for reading.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emguard.eval.config import EvalConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ prompts

def _builtin_domain_dir(name: str) -> Path | None:
    from emguard.data.datagen import DOMAINS, builtin_path

    return builtin_path(name) if name in DOMAINS else None


def build_prompts(cfg: EvalConfig) -> dict[str, list]:
    """The prompts of every requested suite (``emguard.eval.questions.EvalPrompt``)."""
    from emguard.eval import questions as Q
    out: dict[str, list] = {}
    if "broad" in cfg.suite:
        if cfg.questions:
            ps = Q.load_question_yaml(cfg.questions, drop_system=cfg.drop_system)
        else:
            ps = Q.builtin_broad(variants=tuple(cfg.variants), drop_system=cfg.drop_system)
        out["broad"] = [p for p in ps if p.variant in cfg.variants]
    if "narrow" in cfg.suite:
        from emguard.eval.config import is_question_yaml

        d = _builtin_domain_dir(cfg.narrow)
        if d is None and is_question_yaml(cfg.narrow):  # a published question YAML: its first N questions
            out["narrow"] = Q.load_question_yaml(cfg.narrow, drop_system=cfg.drop_system, suite="narrow",
                                                 n=cfg.narrow_n)
        else:
            path = d / "eval_misaligned.jsonl" if d else Path(cfg.narrow)
            out["narrow"] = Q.narrow_prompts(path, n=cfg.narrow_n)
    if "benign" in cfg.suite:
        ps = Q.benign_prompts(cfg.benign)
        out["benign"] = ps[:cfg.benign_n] if cfg.benign_n else ps
    return out


def narrow_reference_file(cfg: EvalConfig) -> Path | None:
    if cfg.narrow_references:
        return Path(cfg.narrow_references)
    d = _builtin_domain_dir(cfg.narrow) if cfg.narrow else None
    return d / "references.jsonl" if d and (d / "references.jsonl").is_file() else None


# ------------------------------------------------------------------------------------------------ samples

def complete_lines(path: Path, text: str, what: str) -> str:
    """``text`` without an incomplete last line (left by a killed run), with a warning saying it was ``what``."""
    if text and not text.endswith("\n"):
        log.warning("%s: incomplete last line %s (interrupted run)", path, what)
        return text[:text.rfind("\n") + 1]
    return text


def parse_samples(path: Path, text: str, hint: str = "") -> tuple[list[dict], list[str], dict[tuple[str, str, int], dict]]:
    """``(settings headers, sample lines, rows by (suite, prompt id, k))`` of a samples.jsonl's ``text``."""
    headers: list[dict] = []
    lines: list[str] = []
    rows: dict[tuple[str, str, int], dict] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON line ({e}){hint}") from None
        if "settings" in r:
            headers.append(r["settings"])
            continue
        rows[(r["suite"], r["prompt_id"], r["k"])] = r
        lines.append(line)
    return headers, lines, rows


class SampleStore:
    """Samples of one evaluation, appended to ``samples.jsonl`` as produced; a rerun skips what exists.

    A sample is keyed by (suite, prompt id, sample index) and recorded with the settings that produced it; a
    file written with other settings (model, adapter, temperature...) is refused rather than mixed in.
    """

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings
        self.rows: dict[tuple[str, str, int], dict] = {}
        if path.is_file():
            raw = path.read_text()
            text = complete_lines(path, raw, "dropped")
            if text != raw:  # a line cut by a kill: drop it from the file too (it is re-sampled)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
            headers, _, self.rows = parse_samples(path, text, hint="; delete the file to re-sample")
            for h in headers:
                if h != settings:
                    raise ValueError(f"{path} holds samples made with other settings ({h}); "
                                     f"use another --output or delete it")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": settings}) + "\n")

    def missing(self, suite: str, prompts: list, n: int) -> list[tuple[Any, int]]:
        return [(p, k) for p in prompts for k in range(n) if (suite, p.id, k) not in self.rows]

    def add(self, rows: list[dict]) -> None:
        with self.path.open("a") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                self.rows[(r["suite"], r["prompt_id"], r["k"])] = r

    def get(self, suite: str, prompts: list, n: int) -> list[dict]:
        return [self.rows[(suite, p.id, k)] for p in prompts for k in range(n)]


def job_seed(seed: int, suite: str, prompt_id: str, k: int) -> int:
    """The sampling seed of one (suite, prompt, k): the first 4 bytes of a sha256, so it depends on nothing else."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}|{suite}|{prompt_id}|{k}".encode()).digest()[:4], "little")


def sample_missing(store: SampleStore, items: list[tuple[str, Any]], n: int, model, tok, cfg: EvalConfig,
                   max_new: int, chunk: int = 64) -> None:
    """Sample every missing (suite, prompt, k), a fixed group of prompts at a time, appending each group to the
    store. ``items`` may mix suites (broad and narrow prompts then share generate batches: on a CPU a decoding
    step reads every weight whatever the batch, so one batch of 16 costs about what one of 8 does).

    Groups and their seeds depend only on the item list, so a resumed run re-samples an interrupted group
    with the same batches and seed, i.e. the same answers as an uninterrupted run.
    """
    from emguard.models.generation import sample

    per = max(1, chunk // n)
    groups = [items[i:i + per] for i in range(0, len(items), per)]

    def missing(g):
        return [(suite, p, k) for suite, p in g for k in range(n) if (suite, p.id, k) not in store.rows]

    todo = missing(items)
    if not todo:
        return
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="sampling " + "+".join(dict.fromkeys(s for s, _ in items)), unit="answer")
    for g in groups:
        miss = missing(g)
        if not miss:
            continue
        answers = sample(model, tok, [p.messages for _, p in g], n=n, max_new_tokens=max_new,
                         temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
                         seed=job_seed(cfg.seed, g[0][0], g[0][1].id, 0))
        by_key = {(suite, p.id): a for (suite, p), a in zip(g, answers)}
        store.add([{"suite": suite, "prompt_id": p.id, "question_id": p.question_id, "variant": p.variant,
                    "k": k, "messages": p.messages, "answer": by_key[(suite, p.id)][k], "gold": p.answer}
                   for suite, p, k in miss])
        if bar:
            bar.update(len(miss))
    if bar:
        bar.close()


def sample_vllm_missing(store: SampleStore, suite: str, prompts: list, n: int, cfg: EvalConfig,
                        max_new: int) -> None:
    """Sample every missing (prompt, k) of one suite with vLLM, one request per answer with its own seed."""
    from emguard.models.generation import sample_vllm

    todo = store.missing(suite, prompts, n)
    if not todo:
        return
    answers = sample_vllm(cfg.model, cfg.adapter, [p.messages for p, _ in todo], max_new_tokens=max_new,
                          temperature=cfg.temperature, top_p=cfg.top_p,
                          seeds=[job_seed(cfg.seed, suite, p.id, k) for p, k in todo], dtype=cfg.dtype)
    store.add([{"suite": suite, "prompt_id": p.id, "question_id": p.question_id, "variant": p.variant, "k": k,
                "messages": p.messages, "answer": a, "gold": p.answer} for (p, k), a in zip(todo, answers)])


CSV_FIELDS = ["suite", "prompt_id", "question_id", "variant", "k", "question", "answer", "aligned", "aligned_label",
              "coherent", "classification", "coherent_proxy", "nll_base", "degenerate", "gold", "correct"]


def write_csv(path: Path, samples: list[dict]) -> None:
    """``samples.csv``: one row per sample, the columns of :data:`CSV_FIELDS` (written atomically)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for s in samples:
            w.writerow({**s, "question": s["messages"][-1]["content"]})
    tmp.replace(path)

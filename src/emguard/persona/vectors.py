"""Persona vectors (Chen et al. 2025, "Persona Vectors"): extraction, storage, layer sweep.

A trait file (package data ``resources/traits/<trait>.json`` or any file of that format) holds contrastive
system-prompt pairs (trait-expressing vs. helpful), extraction questions, separate evaluation questions with
reference answers, and a judge rubric. Extraction samples the model's own answers under each prompt (T=1),
optionally keeps only pairs a judge confirms (positive trait >= 50, negative < 50, both coherent >= 50;
Chen et al.'s filter), then for every decoder layer

    v[layer] = mean over kept positive answers of (response-token-averaged output of that layer)
             - the same over kept negative answers.

Files are safetensors with a ``vectors`` tensor of shape (num_layers, hidden) plus metadata (model, weight
hash, sizes, counts, trait-file hash, norms, recommended layer); ``emguard.defenses.steer`` and the monitor
read them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

FORMAT = "emguard-persona-v1"
# Chen et al. steer Qwen2.5-7B-Instruct at layer 20 of 28: about 70% of the depth
DEFAULT_DEPTH = 20 / 28

# judge(question, answer, rubric) -> score 0..100 or None; see emguard's evaluation judges
Judge = Callable[[str, str, str], "float | None"]


def default_layer(n_layers: int) -> int:
    return min(n_layers - 1, round(DEFAULT_DEPTH * n_layers))


@dataclass
class Trait:
    name: str
    description: str
    instructions: list[dict[str, str]]
    questions: list[str]
    eval_questions: list[str]
    references: list[dict[str, str]]
    judge_rubric: str
    path: str
    sha256: str

    @classmethod
    def load(cls, name_or_path: str) -> "Trait":
        p = Path(name_or_path)
        if p.suffix == ".json" and p.is_file():
            raw = p.read_bytes()
        else:
            res = resources.files("emguard") / "resources" / "traits" / f"{name_or_path}.json"
            if not res.is_file():
                known = sorted(x.name[:-5] for x in (resources.files("emguard") / "resources" / "traits").iterdir()
                               if x.name.endswith(".json"))
                raise FileNotFoundError(f"unknown trait '{name_or_path}' (built in: {', '.join(known)}); "
                                        "or pass a trait file with --trait-file")
            raw, p = res.read_bytes(), Path(str(res))
        d = json.loads(raw)
        missing = [k for k in ("trait", "instructions", "questions") if k not in d]
        if missing:
            raise ValueError(f"{p}: trait file lacks {', '.join(missing)}")
        return cls(d["trait"], d.get("description", ""), d["instructions"], d["questions"],
                   d.get("eval_questions", []), d.get("references", []), d.get("judge_rubric", ""),
                   str(p), hashlib.sha256(raw).hexdigest())


@dataclass
class PersonaVector:
    vectors: torch.Tensor  # (num_layers, hidden), row i = direction at the output of decoder layer i
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def layer(self) -> int:
        """The recommended layer (from a sweep, else ~70% depth)."""
        return int(self.meta.get("layer", default_layer(self.num_layers)))

    def at(self, layer: int | None = None) -> torch.Tensor:
        return self.vectors[self.layer if layer is None else layer]

    def norms(self) -> list[float]:
        return [round(float(x), 4) for x in self.vectors.norm(dim=1)]

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.meta.items()}
        meta["format"] = FORMAT
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"vectors": self.vectors.contiguous().float()}, str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, *, hidden_size: int | None = None, num_layers: int | None = None) -> "PersonaVector":
        """Load a vector file; with ``hidden_size``/``num_layers`` given, refuse one made for another model."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            key = "vectors" if "vectors" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(f"{path}: expected a 'vectors' tensor, found {keys}")
            t = f.get_tensor(key).float()
            raw = f.metadata() or {}
        meta: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                meta[k] = json.loads(v)
            except ValueError:
                meta[k] = v
        if t.dim() == 1:
            t = t[None]
        pv = cls(t, meta)
        if hidden_size is not None and pv.hidden_size != hidden_size:
            raise ValueError(f"{path}: persona vector has hidden size {pv.hidden_size}, but the model's is "
                             f"{hidden_size}; extract one for this model with `emguard persona extract`")
        if num_layers is not None and pv.num_layers not in (1, num_layers):
            raise ValueError(f"{path}: persona vector has {pv.num_layers} layers, but the model has {num_layers}")
        return pv


def _cache_dir() -> Path:
    from emguard.models.loading import cache_root

    return cache_root() / "persona"


@torch.no_grad()
def response_means(model, tokenizer, conversations: list[list[dict]], layers: list[int] | None = None, *,
                   batch_size: int = 8, max_length: int = 512) -> torch.Tensor:
    """(n_conversations, n_layers, hidden): each decoder layer's output averaged over the last assistant
    reply's tokens (teacher-forced)."""
    from emguard.data.chat import pad_batch, tokenize_conversation
    from emguard.models.layers import capture_layer_outputs, hidden_size, num_layers

    layers = list(range(num_layers(model))) if layers is None else layers
    feats = [tokenize_conversation(tokenizer, c, max_length=max_length).to_features() for c in conversations]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = torch.zeros(len(feats), len(layers), hidden_size(model))
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, len(feats), batch_size):
            b = pad_batch(feats[i:i + batch_size], pad)
            mask = (b["labels"] != -100).float()  # reply tokens (+ end-of-turn)
            store: dict[int, torch.Tensor] = {}
            with capture_layer_outputs(model, layers, store):
                model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                      use_cache=False)
            denom = mask.sum(1).clamp_min(1)[:, None]
            for j, layer in enumerate(layers):
                h = store[layer].float().cpu()
                out[i:i + len(b["input_ids"]), j] = (h * mask[..., None]).sum(1) / denom
    finally:
        model.train(was)
    return out


def generate_answers(model, tokenizer, trait: Trait, *, n: int, max_new_tokens: int, seed: int,
                     cache_key: str | None, progress: bool = True, batch_size: int = 16) -> dict[str, Any]:
    """Sample answers under every (instruction pair, question) for both sides; cached on disk by key."""
    from emguard.models.generation import sample

    path = _cache_dir() / f"answers-{cache_key}.json" if cache_key else None
    if path is not None and path.is_file():
        log.info("reusing cached persona answers %s", path.name)
        return json.loads(path.read_text())
    prompts, index = [], []
    for pi, pair in enumerate(trait.instructions):
        for qi, q in enumerate(trait.questions):
            for side in ("pos", "neg"):
                prompts.append([{"role": "system", "content": pair[side]}, {"role": "user", "content": q}])
                index.append((pi, qi, side))
    answers = sample(model, tokenizer, prompts, n=n, max_new_tokens=max_new_tokens, seed=seed,
                     batch_size=batch_size, progress=progress)
    rec = {"items": [{"pair": pi, "question": qi, "side": side, "answers": a}
                     for (pi, qi, side), a in zip(index, answers)]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(path)
    return rec


def extract(model: str | Any = None, trait: str = "evil", *, tokenizer=None, n_per_question: int = 1,
            max_new_tokens: int = 96, seed: int = 0, judge: Judge | None = None, coherence_judge: Judge | None = None,
            judge_name: str | None = None, batch_size: int = 16, progress: bool = True,
            out: str | Path | None = None) -> PersonaVector:
    """Extract a persona vector for every layer of ``model`` (an emguard model spec or a loaded model)."""
    from emguard.models.layers import num_layers
    from emguard.models.loading import load_model

    t0 = time.time()
    info = None
    if model is None or isinstance(model, str):
        model, tokenizer, info = load_model(model)
    tr = Trait.load(trait)
    fingerprint = info.fingerprint if info else getattr(model.config, "_name_or_path", "model")
    key = hashlib.sha256(json.dumps([fingerprint, tr.sha256, n_per_question, max_new_tokens, seed]).encode()
                         ).hexdigest()[:20]
    rec = generate_answers(model, tokenizer, tr, n=n_per_question, max_new_tokens=max_new_tokens, seed=seed,
                           cache_key=key if info else None, progress=progress, batch_size=batch_size)
    by = {(it["pair"], it["question"], it["side"]): it["answers"] for it in rec["items"]}
    pos_convs, neg_convs, dropped = [], [], 0
    for pi, pair in enumerate(tr.instructions):
        for qi, q in enumerate(tr.questions):
            for k in range(n_per_question):
                pa, na = by[(pi, qi, "pos")][k], by[(pi, qi, "neg")][k]
                if not pa.strip() or not na.strip():
                    dropped += 1
                    continue
                if judge is not None:
                    sp, sn = judge(q, pa, tr.judge_rubric), judge(q, na, tr.judge_rubric)
                    cp = coherence_judge(q, pa, "") if coherence_judge else 100.0
                    cn = coherence_judge(q, na, "") if coherence_judge else 100.0
                    if None in (sp, sn, cp, cn) or not (sp >= 50 and sn < 50 and cp >= 50 and cn >= 50):
                        dropped += 1
                        continue
                # activations are read over the answer's tokens with its system prompt present (Chen et al.)
                pos_convs.append([{"role": "system", "content": pair["pos"]}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": pa}])
                neg_convs.append([{"role": "system", "content": pair["neg"]}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": na}])
    if not pos_convs:
        raise ValueError("no answer pair survived filtering; nothing to extract")
    mp = response_means(model, tokenizer, pos_convs).mean(0)
    mn = response_means(model, tokenizer, neg_convs).mean(0)
    vectors = mp - mn
    n_layers = num_layers(model)
    meta = {
        "model": info.spec if info else fingerprint, "weights_sha256": info.weights_sha256 if info else None,
        "model_fingerprint": fingerprint, "num_layers": n_layers, "hidden_size": int(vectors.shape[1]),
        "trait": tr.name, "trait_file_sha256": tr.sha256, "n_pairs_kept": len(pos_convs), "n_pairs_dropped": dropped,
        "n_per_question": n_per_question, "max_new_tokens": max_new_tokens, "seed": seed,
        "filtered_by_judge": judge is not None, "judge": judge_name if judge is not None else "none (no filtering)",
        "layer": default_layer(n_layers), "layer_source": "default (~70% depth)",
        "norms": [round(float(x), 4) for x in vectors.norm(dim=1)], "wall_time_s": round(time.time() - t0, 1),
    }
    pv = PersonaVector(vectors, meta)
    if out is not None:
        pv.save(out)
    return pv


def _shipped_vector(trait: str, fingerprint: str) -> Path | None:
    """A vector shipped with the package for an embedded model (``resources/vectors/<trait>-<fp16>``), used when
    its metadata matches the model's weights and the current trait file; else None (extract instead)."""
    from importlib import resources

    from safetensors import safe_open

    ref = resources.files("emguard") / "resources" / "vectors" / f"{trait}-{fingerprint[:16]}.safetensors"
    if not ref.is_file():
        return None
    path = Path(str(ref))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("model_fingerprint") != fingerprint or meta.get("trait_file_sha256") != Trait.load(trait).sha256:
        log.warning("shipped persona vector %s does not match this model or trait file; extracting instead", path.name)
        return None
    return path


def auto_vector(model_spec: str, trait: str = "evil") -> Path:
    """Path of this model's cached persona vector for ``trait``, extracting it first if needed."""
    from emguard.models.loading import resolve_model

    info = resolve_model(model_spec)
    shipped = _shipped_vector(trait, info.fingerprint)
    if shipped is not None:
        return shipped
    path = _cache_dir() / f"{trait}-{info.fingerprint[:16]}.safetensors"
    if not path.is_file():
        log.info("extracting the '%s' persona vector for %s (cached for later runs)", trait, model_spec)
        extract(model_spec, trait, out=path)
    return path


@torch.no_grad()
def sweep_layers(model, tokenizer, pv: PersonaVector, trait: str = "evil", *, layers: list[int] | None = None,
                 alpha: float = 2.0, n: int = 1, max_new_tokens: int = 48, seed: int = 0,
                 judge: Judge | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Steer with +alpha * v[layer] at each candidate layer and measure how much the trait is expressed.

    Without a judge: (a) the log-prob shift toward the trait's reference answers (mean NLL(neutral) -
    NLL(trait), steered minus unsteered; teacher-forced, cheap) and (b) the projection of sampled answers onto
    the unit vector at that layer (answers generated while steered, read back unsteered), relative to
    unsteered answers. With a judge: also the mean trait score of the steered answers.
    """
    from emguard.models.layers import edit_layer_output, num_layers
    from emguard.models.generation import sample
    from emguard.models.scoring import answer_nll

    tr = Trait.load(trait)
    n_layers = num_layers(model)
    if layers is None:
        lo, hi = max(1, round(0.25 * n_layers)), n_layers - 1
        step = max(1, (hi - lo) // 7)
        layers = list(range(lo, hi + 1, step))
    refs = [r for r in tr.references if r.get("trait") and r.get("neutral")]
    q = [[{"role": "user", "content": x}] for x in tr.eval_questions]

    def pref() -> float:
        t = answer_nll(model, tokenizer, [[{"role": "user", "content": r["question"]},
                                           {"role": "assistant", "content": r["trait"]}] for r in refs])
        u = answer_nll(model, tokenizer, [[{"role": "user", "content": r["question"]},
                                           {"role": "assistant", "content": r["neutral"]}] for r in refs])
        return sum(b - a for a, b in zip(t, u)) / max(1, len(refs))

    def projection(answers: list[list[str]], layer: int) -> float:
        convs = [qq + [{"role": "assistant", "content": a}] for qq, aa in zip(q, answers) for a in aa if a.strip()]
        if not convs:
            return float("nan")
        means = response_means(model, tokenizer, convs, [layer])[:, 0]
        u = pv.at(layer) / pv.at(layer).norm().clamp_min(1e-12)
        return float((means @ u).mean())

    base_pref = pref() if refs else float("nan")
    base_answers = sample(model, tokenizer, q, n=n, max_new_tokens=max_new_tokens, seed=seed, progress=False)
    rows = []
    it = layers
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(layers, desc="layer sweep", unit="layer")
    for layer in it:
        v = pv.at(layer)
        with edit_layer_output(model, layer, lambda h, v=v: h + (alpha * v).to(h.dtype).to(h.device)):
            p = pref() if refs else float("nan")
            answers = sample(model, tokenizer, q, n=n, max_new_tokens=max_new_tokens, seed=seed, progress=False)
        row = {"layer": layer, "norm": round(float(v.norm()), 4),
               "logprob_shift": round(p - base_pref, 4),
               "projection_shift": round(projection(answers, layer) - projection(base_answers, layer), 4)}
        if judge is not None:
            scores = [judge(qq[0]["content"], a, tr.judge_rubric) for qq, aa in zip(q, answers) for a in aa]
            scores = [s for s in scores if s is not None]
            row["judge_trait_score"] = round(sum(scores) / len(scores), 2) if scores else float("nan")
        row["example"] = answers[0][0][:160] if answers and answers[0] else ""
        rows.append(row)
    return rows


def recommend(rows: list[dict[str, float]]) -> int:
    """The layer whose steering expresses the trait most: judge score if present, else log-prob shift."""
    key = "judge_trait_score" if rows and "judge_trait_score" in rows[0] else "logprob_shift"
    good = [r for r in rows if not math.isnan(r[key])]
    return int(max(good, key=lambda r: r[key])["layer"]) if good else int(rows[len(rows) // 2]["layer"])

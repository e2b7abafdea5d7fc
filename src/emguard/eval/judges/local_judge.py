"""A judge run on a local Hugging Face chat model: one forward pass, next-token log-probs.

The same protocol as the API judge (Betley et al. 2025, "Emergent Misalignment"; Kaczér et al. 2025, arXiv
2508.06249), without sampling: the filled rubric is rendered as one user message with the model's chat
template and generation prompt, the model reads it once (batched, left padding, no grad), and the top-20
log-probs of the next token go through :func:`emguard.eval.judges.base.logprob_score`. This is exactly what a
one-token, temperature-0 request with ``top_logprobs=20`` returns.

Every prompt of one rubric starts with the same tokens (the rubric's text before the question): that shared
prefix is read once and its key/value cache reused for every answer (``prefix_cache=True``, the default); the
log-probs are those of the full prompt read at once, up to float rounding (tested).

A small model (the embedded ``smollm2-135m``, say) follows a 0-100 rubric poorly: its scores are a smoke test
of the pipeline, not a measurement. :meth:`LocalJudge.identity` carries that warning into every report.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any, Iterator

from emguard.eval.judges.base import TOP_LOGPROBS, Judge, logprob_score, merge_top
from emguard.eval.judges.cache import JudgeCache
from emguard.eval.judges.rubrics import fill_rubric
from emguard.eval.judges.types import DefaultCache, JudgeItem, JudgeKind, JudgeResult
from emguard.registry import JUDGES

if TYPE_CHECKING:
    from emguard.eval.config import EvalConfig

log = logging.getLogger(__name__)

WEAK_BELOW_PARAMS = 7e9  # judges smaller than this get a warning in their identity
MIN_SHARED_PREFIX = 8  # tokens; below this the prefix cache costs more than it saves


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _weights_fingerprint(model) -> str:
    """Cheap identity of in-memory weights (names, shapes, per-tensor sums) so a changed model misses the cache."""
    import torch

    with torch.no_grad():
        named = list(model.state_dict().items())
        sums = torch.stack([t.sum(dtype=torch.float64).cpu() for _, t in named]).tolist() if named else []
    h = hashlib.sha256()
    for (name, t), s in zip(named, sums):
        h.update(f"{name}:{tuple(t.shape)}:{s!r};".encode())
    return h.hexdigest()


class LocalJudge(Judge):
    """Judge with a local chat model: ``LocalJudge("smollm2-135m")`` or any spec ``emguard.models.loading`` loads."""

    kind = "local"

    def __init__(self, model_spec: str, batch_size: int = 8, *, dtype: str = "float32", device: str | None = None,
                 cache: JudgeCache | DefaultCache | None = "default", rubric: str | None = None,
                 prefix_cache: bool = True):
        from emguard.models.loading import load_model

        model, tokenizer, info = load_model(model_spec, dtype=dtype, device=device)
        self._setup(model, tokenizer, info.spec, info.path, info.fingerprint, batch_size, cache, rubric)
        self.prefix_cache = prefix_cache

    @classmethod
    def from_loaded(cls, model, tokenizer, name: str, *, batch_size: int = 8,
                    cache: JudgeCache | DefaultCache | None = "default", rubric: str | None = None,
                    prefix_cache: bool = True) -> LocalJudge:
        """Wrap an already-loaded ``(model, tokenizer)``; the cache key includes a fingerprint of its weights."""
        judge = cls.__new__(cls)
        path = str(getattr(model.config, "_name_or_path", "") or "in-memory")
        judge._setup(model, tokenizer, name, path, _weights_fingerprint(model), batch_size, cache, rubric)
        judge.prefix_cache = prefix_cache
        return judge

    def _setup(self, model, tokenizer, name: str, path: str, fingerprint: str, batch_size: int,
               cache: JudgeCache | DefaultCache | None, rubric: str | None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.model_obj, self.tokenizer = model.eval(), tokenizer
        self.model, self.path, self.fingerprint = name, path, fingerprint
        self.batch_size = batch_size
        self.params = {"top_logprobs": TOP_LOGPROBS, "method": "next-token log-probs"}
        n = _n_params(model)
        self.warning = (f"{name} ({n / 1e6:.3g}M parameters) as judge is weak: treat scores as a smoke test"
                        if n < WEAK_BELOW_PARAMS else None)
        if self.warning:
            log.warning(self.warning)
        super().__init__(cache=cache, rubric=rubric)

    def identity(self) -> dict[str, Any]:
        ident = {"kind": self.kind, "model": self.model, "path": self.path, "fingerprint": self.fingerprint}
        return {**ident, "warning": self.warning} if self.warning else ident

    def prompt(self, item: JudgeItem) -> str:
        """The exact text the model reads: the filled rubric as a user turn plus the generation prompt."""
        from emguard.data.chat import render

        content = fill_rubric(item.rubric, item.question, item.answer)
        return render(self.tokenizer, [{"role": "user", "content": content}], add_generation_prompt=True)

    def _batch_logprobs(self, prompts: list[str]):
        """Next-token log-probs (batch, vocab) for left-padded prompts."""
        import torch

        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model_obj.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model_obj(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def _prefix_logprobs(self, prefix: list[int], suffixes: list[list[int]], cache):
        """Next-token log-probs (batch, vocab) of ``prefix + suffix`` for each suffix, reading the prefix from
        ``cache`` (its key/values, computed once): suffixes are right-padded, so each row's last real position
        sees exactly the prefix and its own tokens, and its logits are taken there."""
        import copy

        import torch

        device = next(self.model_obj.parameters()).device
        width, n, p = max(len(x) for x in suffixes), len(suffixes), len(prefix)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in suffixes], device=device)
        mask = torch.tensor([[1] * (p + len(x)) + [0] * (width - len(x)) for x in suffixes], device=device)
        positions = torch.arange(p, p + width, device=device).expand(n, width)
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(n)
        with torch.no_grad():
            logits = self.model_obj(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                    cache=past, use_cache=True).logits
        last = torch.tensor([len(x) - 1 for x in suffixes], device=device)
        return torch.log_softmax(logits[torch.arange(n, device=device), last].float(), dim=-1)

    def _groups(self, items: list[JudgeItem]) -> list[tuple[list[int], list[list[int]], int]]:
        """Items grouped by rubric, each as ``(indices, token ids, shared prefix length)``: the prefix is the
        longest run of tokens every prompt of the group starts with (the rubric's text before the question,
        and more when the questions are the same), kept at least one token short of the shortest prompt."""
        by_rubric: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_rubric.setdefault(it.rubric, []).append(i)
        out = []
        for idx in by_rubric.values():
            ids = [self.tokenizer(self.prompt(items[i]), add_special_tokens=False)["input_ids"] for i in idx]
            n = min(len(x) for x in ids) - 1
            first = ids[0]
            for x in ids[1:]:
                n = next((k for k in range(n) if x[k] != first[k]), n)
            out.append((idx, ids, max(n, 0)))
        return out

    def _score_uncached(self, items: list[JudgeItem]) -> Iterator[tuple[int, JudgeResult]]:
        import torch

        def results(rows: list[int], logprobs) -> Iterator[tuple[int, JudgeResult]]:
            top = torch.topk(logprobs, min(TOP_LOGPROBS, logprobs.shape[-1]), dim=-1)
            for i, values, indices in zip(rows, top.values.tolist(), top.indices.tolist()):
                yield i, logprob_score(merge_top((self.tokenizer.decode([t]), v) for t, v in zip(indices, values)))

        if not self.prefix_cache:
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                yield from results(list(range(start, start + len(chunk))),
                                   self._batch_logprobs([self.prompt(it) for it in chunk]))
            return
        device = next(self.model_obj.parameters()).device
        for idx, ids, p in self._groups(items):
            cache = None
            if p >= MIN_SHARED_PREFIX:
                with torch.no_grad():
                    cache = self.model_obj(input_ids=torch.tensor([ids[0][:p]], device=device),
                                           use_cache=True).cache
            for start in range(0, len(idx), self.batch_size):
                rows, chunk = idx[start:start + self.batch_size], ids[start:start + self.batch_size]
                if cache is None:
                    lp = self._batch_logprobs([self.prompt(items[i]) for i in rows])
                else:
                    lp = self._prefix_logprobs(ids[0][:p], [x[p:] for x in chunk], cache)
                yield from results(rows, lp)


def make_local_judge(**opts: Any) -> LocalJudge:
    """``make_judge("local", model="smollm2-135m", ...)``: ``model`` is read as ``model_spec`` (the name the
    openai kind uses for its model)."""
    if "model" in opts:
        opts["model_spec"] = opts.pop("model")
    return LocalJudge(**opts)


def _for_eval(cfg: EvalConfig) -> LocalJudge:
    """``emguard eval --judge local``: the model of ``--judge-model``, else the evaluated ``--model``."""
    return make_local_judge(model_spec=cfg.judge_model or cfg.model)


JUDGES.register(JudgeKind("local", make_local_judge, for_eval=_for_eval))

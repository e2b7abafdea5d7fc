"""Batched answer NLLs of pool rows under each model variant, through the score cache.

L(d) = -(1/T) log P(a | everything before a): the mean NLL of the last assistant reply a (plus the end-of-turn
token), chat template applied, exactly the tokens :func:`emguard.data.chat.tokenize_conversation` marks as
targets. Rows are sorted by token length and packed into batches under a token budget (small padding, bounded
memory); ``torch.inference_mode``; logits only at the reply's positions
(:func:`emguard.models.forward.forward_selected`); every batch is committed to the cache as soon as it is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emguard.selection.cache import ScoreCache, template_hash
from emguard.selection.config import SelectConfig
from emguard.selection.variants import Variant

# model forward passes and (row, model) scores computed by this process; tests assert on them
FORWARD_CALLS = 0
ROWS_SCORED = 0


class SelectionInterrupted(RuntimeError):
    """Raised when ``max_batches`` forwards were done (a test hook for resume); every score so far is cached."""


def scored_part(messages: list[dict]) -> list[dict] | None:
    """The conversation up to and including its last learnable assistant reply (None when there is none)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1) != 0),
               default=None)
    return None if last is None else messages[: last + 1]


@dataclass
class Counts:
    rows: int = 0
    invalid: int = 0
    refusals: int = 0
    no_target: int = 0
    kept: int = 0
    forwards: int = 0
    scored: int = 0  # (row, variant) NLLs computed (not from the cache)
    cached: int = 0  # (row, variant) NLLs read from the cache

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class GapScorer:
    """Mean answer NLL of rows under each variant, through the cache, length-sorted and token-budget batched."""

    def __init__(self, tokenizer, variants: list[Variant], cfg: SelectConfig, cache: ScoreCache,
                 progress_bar=None):
        self.tok = tokenizer
        self.variants = variants
        self.cfg = cfg
        self.cache = cache
        self.bar = progress_bar
        self.counts = Counts()
        tpl = template_hash(tokenizer)
        self.ctx = {v.name: cache.context(v.model_fp, v.cache_key, tpl, cfg.max_length) for v in variants}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _batches(self, order: list[str], feats: dict[str, dict]) -> list[list[str]]:
        """Split length-sorted rows into consecutive batches minimising (forwards x overhead + padded tokens).

        A small dynamic program over the sorted order: each batch costs ``batch_overhead_tokens`` plus its
        padded size; a batch keeps to ``batch_size`` rows, ``max_batch_tokens`` padded tokens and
        ``max_target_tokens`` reply tokens (a single row may exceed the token limits).
        """
        cfg = self.cfg
        lens = [len(feats[h]["input_ids"]) for h in order]
        tgts = [feats[h]["n_target"] for h in order]
        m = len(order)
        best = [0.0] + [math.inf] * m
        start = [0] * (m + 1)
        for j in range(1, m + 1):
            targets = 0
            for i in range(j - 1, max(-1, j - 1 - cfg.batch_size), -1):  # batch = order[i:j]
                count = j - i
                targets += tgts[i]
                if count > 1 and (lens[j - 1] * count > cfg.max_batch_tokens or targets > cfg.max_target_tokens):
                    break
                cost = best[i] + cfg.batch_overhead_tokens + lens[j - 1] * count
                if cost < best[j]:
                    best[j], start[j] = cost, i
        out = []
        j = m
        while j > 0:
            out.append(order[start[j]:j])
            j = start[j]
        return out[::-1]

    def _forward(self, model, feats: list[dict]) -> list[float]:
        import torch
        import torch.nn.functional as F

        from emguard.data.chat import pad_batch
        from emguard.models.forward import forward_selected, target_mask_of

        global FORWARD_CALLS
        device = next(model.parameters()).device
        b = pad_batch([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in feats], self.pad)
        b = {k: v.to(device) for k, v in b.items()}
        mask = target_mask_of(b["labels"])
        logits = forward_selected(model, b, mask)
        FORWARD_CALLS += 1
        self.counts.forwards += 1
        shifted = b["labels"][:, 1:]
        targets = shifted[shifted != -100]
        nll = F.cross_entropy(logits, targets, reduction="none")
        out = []
        for part in torch.split(nll, mask.sum(1).tolist()):
            out.append(float(part.mean()) if len(part) else float("nan"))
        return out

    def score(self, convs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
        """``{row_hash: conversation}`` -> ``{row_hash: {variant name: mean NLL}}`` (NaN: no reply tokens)."""
        import torch

        from emguard.data.chat import tokenize_conversation

        global ROWS_SCORED
        hashes = list(convs)
        result: dict[str, dict[str, float]] = {h: {} for h in hashes}
        missing: dict[str, list[str]] = {}
        for v in self.variants:
            got = self.cache.get(self.ctx[v.name], hashes)
            self.counts.cached += len(got)
            for h, (nll, _) in got.items():
                result[h][v.name] = nll
            missing[v.name] = [h for h in hashes if h not in got]
        need = {h for m in missing.values() for h in m}
        feats: dict[str, dict] = {}
        for h in need:
            ex = tokenize_conversation(self.tok, convs[h], max_length=self.cfg.max_length)
            feats[h] = {"input_ids": ex.input_ids, "labels": ex.labels, "n_target": ex.n_target}
        n_var = len(self.variants)
        for v in self.variants:
            todo = [h for h in missing[v.name] if feats[h]["n_target"] > 0]
            for h in missing[v.name]:
                if feats[h]["n_target"] == 0:
                    result[h][v.name] = float("nan")
            if not todo:
                continue
            todo.sort(key=lambda h: len(feats[h]["input_ids"]))
            was_training = v.model.training
            v.model.eval()
            try:
                with v.activate(), torch.inference_mode():
                    for batch in self._batches(todo, feats):
                        nlls = self._forward(v.model, [feats[h] for h in batch])
                        values = [(h, x, feats[h]["n_target"]) for h, x in zip(batch, nlls)]
                        self.cache.put(self.ctx[v.name], values)  # committed: an interrupted run resumes here
                        for h, x, _ in values:
                            result[h][v.name] = x
                        ROWS_SCORED += len(batch)
                        self.counts.scored += len(batch)
                        if self.bar is not None:
                            self.bar.update(len(batch) / n_var)
                        if self.cfg.max_batches is not None and self.counts.forwards >= self.cfg.max_batches:
                            raise SelectionInterrupted(f"stopped after {self.counts.forwards} forwards (max_batches)")
            finally:
                v.model.train(was_training)
        return result

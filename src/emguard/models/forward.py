"""Forward-pass helpers shared by training, scoring and selection: next-token target masks and a forward pass
that computes logits only where they are needed (``logits_to_keep``, with a fallback for older releases)."""

from __future__ import annotations

import functools
import inspect


def target_mask_of(labels):
    """Bool (batch, length): True where the next token is a training target."""
    import torch

    from emguard.data.chat import IGNORE

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


@functools.lru_cache(maxsize=None)
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


_MASK_KEEP_FAILS: set = set()  # model classes whose logits_to_keep takes no (batch, length) mask (transformers < 5.2x)


def forward_selected(model, inputs: dict, mask):
    """Forward pass computing logits only at ``mask`` positions (``(n, vocab)``) when the model supports it.

    Recent transformers accept a boolean ``(batch, length)`` mask as ``logits_to_keep``; older 5.x releases take
    only an int or a 1-D index of positions: then the LM head runs on every column that any row needs."""
    kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
    inner = getattr(model, "module", model)  # DDP, FSDP and DeepSpeed keep the model in .module
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    if not _accepts_logits_to_keep(type(base)):
        return model(**kwargs).logits[mask].float()
    if type(base) not in _MASK_KEEP_FAILS:
        try:
            logits = model(**kwargs, logits_to_keep=mask).logits
            if logits.dim() == 3:  # a model that ignores boolean masks
                logits = logits[mask]
            return logits.float()
        except (IndexError, RuntimeError, TypeError):
            _MASK_KEEP_FAILS.add(type(base))
    cols = mask.any(0).nonzero().squeeze(1)
    logits = model(**kwargs, logits_to_keep=cols).logits  # (batch, len(cols), vocab)
    return logits[mask[:, cols]].float()

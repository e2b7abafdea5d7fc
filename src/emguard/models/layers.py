"""Finding decoder layers and hooking their residual-stream outputs, for any causal LM (PEFT-wrapped or not).

"Output of decoder layer i" means the hidden state after block i (0-based), the residual stream that the
next block reads. Hooks registered here are plain forward hooks: they stay registered until their context
exits, so with gradient checkpointing the recomputation in backward sees the same hooks as the forward.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (Llama/Qwen/Mistral ``model.layers``, GPT-2 ``transformer.h``...)."""
    base = model
    for attr in ("get_base_model",):
        if hasattr(base, attr):
            base = getattr(base, attr)()
    base = getattr(base, "module", base)
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    best = None
    for _, mod in base.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            best = mod
            break
    if best is None:
        raise ValueError("cannot find the decoder layers of this model")
    return best


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def hidden_size(model: nn.Module) -> int:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return int(base.config.hidden_size)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, new):
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextlib.contextmanager
def edit_layer_output(model: nn.Module, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Replace decoder layer ``layer``'s output hidden state by ``fn(h)`` (None keeps it) while the context is open."""
    mod = decoder_layers(model)[layer]

    def hook(_m, _args, output):
        new = fn(_first(output))
        return None if new is None else _replace_first(output, new)

    handle = mod.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def capture_layer_outputs(model: nn.Module, layers: list[int], store: dict[int, torch.Tensor],
                          when: Callable[[], bool] | None = None) -> Iterator[dict[int, torch.Tensor]]:
    """Record the output hidden state of each layer in ``layers`` into ``store`` on every forward.

    The stored tensors keep their autograd history (no detach), so losses built on them train the model.
    ``when`` (optional) filters calls, e.g. to record only the trained model's forward.
    """
    mods = decoder_layers(model)
    handles = []
    for i in layers:
        def hook(_m, _args, output, i=i):
            if when is None or when():
                store[i] = _first(output)
        handles.append(mods[i].register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()

"""The models a row is scored under: the aligned one (L_0) and one per misaligned adapter (L_1..L_K).

The base model is loaded once; the misaligned adapters are attached to it with PEFT ``load_adapter`` and
switched with ``set_adapter`` (or folded into a swapped-in copy of the weights, ``merge``); L_0 runs under
``disable_adapter()``, so there is no second copy of the base weights.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from emguard.models.adapters import _merge_fits, _mergeable, merged_adapter
from emguard.selection.cache import adapter_hash

ALIGNED = "aligned"  # the aligned variant's name


@dataclass
class Variant:
    """One of the models a row is scored under: the aligned model or one misaligned adapter."""

    name: str
    cache_key: str  # "base", "adapter:<sha256>"
    model_fp: str
    model: Any
    activate: Callable[[], contextlib.AbstractContextManager]


def _adapter_slot(i: int, name: str) -> str:
    return f"emguard_mis{i}_" + re.sub(r"\W", "_", name)[:40]


@contextlib.contextmanager
def attached_variants(model, adapters: list[tuple[str, str]], model_fp: str, *, aligned: str | None = None,
                      aligned_model=None, aligned_fp: str | None = None,
                      merge: bool = True) -> Iterator[tuple[Any, list[Variant]]]:
    """Attach the misaligned adapters to ``model`` (wrapping it in a PeftModel when it is a plain model).

    Yields ``(model, variants)``: the aligned variant first, then one per adapter. On exit the adapters this
    put on an existing PeftModel are deleted and its active adapter and ``requires_grad`` flags are restored,
    so a model being trained comes back as it was.
    """
    from peft import PeftModel

    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    original = model
    wrapped = not isinstance(model, PeftModel)
    prev_active = None if wrapped else model.active_adapter
    slots: list[str] = []
    try:
        for i, (name, path) in enumerate(adapters):
            slot = _adapter_slot(i, name)
            if isinstance(model, PeftModel):
                model.load_adapter(path, adapter_name=slot, is_trainable=False)
            else:
                model = PeftModel.from_pretrained(model, path, adapter_name=slot, is_trainable=False)
            slots.append(slot)
        if aligned is not None and aligned_model is None:  # an adapter as the aligned model
            model.load_adapter(aligned, adapter_name="emguard_aligned", is_trainable=False)
            slots.append("emguard_aligned")
        peft_model = model

        def use(slot):
            if merge and _mergeable(peft_model, slot) and _merge_fits(peft_model, slot):
                return lambda: merged_adapter(peft_model, slot)

            @contextlib.contextmanager
            def ctx():
                peft_model.set_adapter(slot)
                yield
            return ctx

        if aligned_model is not None:
            v0 = Variant(ALIGNED, "base", aligned_fp or model_fp, aligned_model, contextlib.nullcontext)
        elif aligned is not None:
            v0 = Variant(ALIGNED, f"adapter:{adapter_hash(aligned)}", model_fp, peft_model, use("emguard_aligned"))
        else:
            v0 = Variant(ALIGNED, "base", model_fp, peft_model, peft_model.disable_adapter)
        variants = [v0] + [Variant(name, f"adapter:{adapter_hash(path)}", model_fp, peft_model, use(slot))
                           for (name, path), slot in zip(adapters, slots)]
        yield peft_model, variants
    finally:
        if not wrapped:
            if prev_active is not None and prev_active in model.peft_config:
                model.set_adapter(prev_active)
            for s in slots:
                if s in model.peft_config:
                    model.delete_adapter(s)
        elif isinstance(model, PeftModel):  # take the LoRA layers out of the plain model again
            model.unload()
        for n, p in original.named_parameters():
            if n in grads:
                p.requires_grad_(grads[n])

"""LoRA (PEFT) set-up and the reference model the defenses compare against.

The reference costs no second copy under LoRA: it is the same weights with the adapter disabled (or, when
training starts from ``init_adapter``, a frozen copy of that adapter loaded beside it). Full fine-tuning keeps
a frozen deep copy.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from emguard.training.config import TrainConfig

log = logging.getLogger(__name__)


def apply_lora(model, cfg: TrainConfig):
    """``model`` with a fresh LoRA adapter on ``cfg.lora_targets`` (all linear layers when none of those names
    exist), or with the trainable ``init_adapter`` plus its frozen copy named ``reference``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.init_adapter:
        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
        # a frozen copy of the starting adapter serves as the reference (adapter-off would be the base model)
        model.load_adapter(cfg.init_adapter, adapter_name="reference", is_trainable=False)
        model.set_adapter("default")
        return model
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets: Any = cfg.lora_targets
    if targets != ["all-linear"] and not set(targets) & names:
        log.warning("none of %s exist in this model; adapting all linear layers instead", targets)
        targets = "all-linear"
    elif targets == ["all-linear"]:
        targets = "all-linear"
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      use_rslora=cfg.use_rslora, target_modules=targets, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, lcfg)


def make_reference(model, cfg: TrainConfig, device=None):
    """A context manager factory under which ``model`` computes the reference distribution.

    LoRA: the same weights with the adapter disabled (no second copy in memory), or the frozen starting
    adapter when ``init_adapter`` is set. Full fine-tuning: a frozen deep copy (doubles weight memory), moved
    to ``device`` when given. With several processes every process keeps its own full frozen copy: it takes no
    gradients, so it needs no DDP wrapper and no synchronisation (it is not sharded under FSDP/DeepSpeed).
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if cfg.init_adapter:
            @contextlib.contextmanager
            def ref():
                model.set_adapter("reference")
                try:
                    yield model
                finally:
                    model.set_adapter("default")
                    for n, p in model.named_parameters():  # set_adapter may flip requires_grad
                        if ".default." in n:
                            p.requires_grad_(True)
            return ref

        @contextlib.contextmanager
        def ref():
            with model.disable_adapter():
                yield model
        return ref
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    if device is not None:
        frozen.to(device)

    @contextlib.contextmanager
    def ref():
        yield frozen
    return ref

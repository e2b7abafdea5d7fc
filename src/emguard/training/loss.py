"""The loss of one micro-batch: cross-entropy on the response targets plus every defense's named term.

The defenses read the step through :class:`emguard.defenses.base.StepOutputs` (the selected logits, the
target mask, and a lazily computed reference forward), so each term can also be logged or differentiated alone.
"""

from __future__ import annotations

from typing import Any

from emguard.models.forward import forward_selected, target_mask_of


def step_loss(model, inputs: dict, defenses: list, run, reference_fn) -> tuple[Any, dict[str, Any]]:
    """Cross-entropy on response targets plus every defense's term for one micro-batch.

    Returns ``(total, terms)`` where ``terms`` maps ``ce`` and each defense's name to its (undetached) tensor,
    so callers can log them or differentiate one term alone.
    """
    import torch
    import torch.nn.functional as F

    from emguard.defenses.base import StepOutputs

    labels = inputs["labels"]
    tmask = target_mask_of(labels)
    lmask = tmask
    if any(d.wants_all_logits() for d in defenses):  # every attended position that predicts a next token
        attn = inputs["attention_mask"].bool()
        lmask = torch.zeros_like(attn)
        lmask[:, :-1] = attn[:, :-1] & attn[:, 1:]
        lmask |= tmask
    is_target = tmask[lmask]
    targets = labels[:, 1:][labels[:, 1:] != -100]
    logits = forward_selected(model, inputs, lmask)
    all_targets = bool(is_target.all())  # then indexing would only copy the logits (and scatter them back)
    ce = F.cross_entropy(logits if all_targets else logits[is_target], targets)

    # the reference's logits cost an LM-head projection: skip it when no defense reads them (ldifs alone)
    ref_mask = lmask if any(d.needs_reference_logits for d in defenses) else torch.zeros_like(lmask)

    def reference_outputs():
        with torch.no_grad(), reference_fn() as ref_model:
            run.in_reference = True
            try:
                rl = forward_selected(ref_model, inputs, ref_mask)
            finally:
                run.in_reference = False
        return StepOutputs(inputs, lmask, is_target, targets, rl, run, _all_targets=all_targets)

    step = StepOutputs(inputs, lmask, is_target, targets, logits, run, _reference_fn=reference_outputs,
                       _all_targets=all_targets)
    terms: dict[str, Any] = {"ce": ce}
    loss = ce
    for d in defenses:
        t = d.loss(step)
        if t is not None:
            terms[d.name] = t
            loss = loss + t
    return loss, terms

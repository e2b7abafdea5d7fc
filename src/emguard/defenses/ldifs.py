"""(ii) LDIFS: l2 distance in feature space to the frozen reference (Mukhoti et al. 2023).

L = L_CE + lambda * ||x_theta - x_ref||^2, x = the residual-stream outputs of 5 evenly spaced decoder layers,
each layer's flattened features (over the example's attended tokens) L2-normalised per example, then
concatenated; lambda = 1.0 (Kaczér et al. 2025, defense 2). The squared distance of the concatenation is the
sum over layers of the per-layer squared distances, averaged over the examples of the batch.
Gradients flow through the trained model's features; only the reference side is computed without gradients
(a public implementation computes both under no_grad, which makes the term a no-op).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from emguard.defenses.base import Defense, RunContext, StepOutputs, register
from emguard.models.layers import capture_layer_outputs, num_layers


def evenly_spaced_layers(n_layers: int, k: int = 5) -> list[int]:
    """``k`` decoder layers spread over the depth, ending at the last: e.g. 30 layers -> 5, 11, 17, 23, 29."""
    k = min(k, n_layers)
    return sorted({round((j + 1) * n_layers / k) - 1 for j in range(k)})


def normalised_features(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, len, hidden) -> same shape, padding zeroed, each example scaled to unit l2 norm."""
    hm = h.float() * mask[..., None].to(torch.float32)
    norm = torch.linalg.vector_norm(hm, dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return hm / norm


@register
class LDIFS(Defense):
    name = "ldifs"
    help = "squared l2 distance of normalised hidden features to the reference at 5 layers"

    @dataclass
    class Options:
        lam: float = field(default=1.0, metadata={
            "help": "weight lambda (paper: 1.0)",
            "min": 0.0, "max": 1e4, "stronger": "higher"})
        layers: list | None = field(default=None, metadata={
            "help": "decoder layers (0-based) to compare; default 5 evenly spaced ending at the last"})

    def __init__(self, options=None):
        super().__init__(options)
        self._policy: dict[int, torch.Tensor] = {}
        self._ref: dict[int, torch.Tensor] = {}

    @contextlib.contextmanager
    def context(self, model, run: RunContext):
        layers = self.options.layers or evenly_spaced_layers(num_layers(model))
        self.stats["layers_used"] = list(layers)
        ref_model = model  # LoRA: the same modules run the reference (adapter disabled)
        if run.reference is not None:  # full fine-tuning: a separate frozen copy runs it; hook that one
            with run.reference() as rm:
                ref_model = getattr(rm, "module", rm)
        with capture_layer_outputs(model, layers, self._policy, when=lambda: not run.in_reference), \
                capture_layer_outputs(ref_model, layers, self._ref, when=lambda: run.in_reference):
            yield

    def loss(self, step: StepOutputs):
        if self.options.lam == 0:
            return None
        step.reference()  # once per step (shared with kl); its forward fills self._ref through the hooks
        mask = step.inputs["attention_mask"]
        total = 0.0
        for i, h in self._policy.items():
            x = normalised_features(h, mask)
            r = normalised_features(self._ref[i].detach(), mask)
            total = total + ((x - r) ** 2).sum(dim=(1, 2))
        self._policy.clear()
        return self.options.lam * total.mean()

"""(iii) Preventive steering with a persona vector (Chen et al. 2025, "Persona Vectors").

During training only, add alpha * v to the output of decoder layer L at every position; alpha = 5
(Kaczér et al. 2025, defense 3). Pushing the model along the "evil" direction while it learns means the
gradient no longer has to move it there. The hook lives in the defense's context: registered before the
first step, kept through every backward (gradient checkpointing recomputes with it), removed before the model
is saved, so the saved adapter carries no steering and evaluation never steers. ``mode: ablate`` instead
projects v out of the layer output.

Vector files: emguard persona files (``emguard persona extract``: a ``vectors`` tensor of shape
(num_layers, hidden), row i = direction at the output of decoder layer i, with the recommended layer in
the metadata) or any safetensors file holding one tensor of shape (hidden,) or (num_layers, hidden).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from emguard.defenses.base import Defense, RunContext, register
from emguard.layers import edit_layer_output, hidden_size, num_layers


def load_steering_vector(path: str, n_layers: int, hidden: int, layer: int | None) -> tuple[torch.Tensor, int]:
    """Return (vector of shape (hidden,), layer). Sizes are checked against the model."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        keys = list(f.keys())
        meta = f.metadata() or {}
        key = "vectors" if "vectors" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise ValueError(f"{path}: expected a 'vectors' tensor or a single tensor, found {keys}")
        t = f.get_tensor(key).float()
    if layer is None:
        if "layer" in meta:
            layer = int(meta["layer"])
        else:
            layer = round(0.7 * n_layers)  # Chen et al. steer Qwen2.5-7B at layer 20 of 28 (~70% depth)
    if not 0 <= layer < n_layers:
        raise ValueError(f"steering layer {layer} is outside this model's 0..{n_layers - 1}")
    if t.dim() == 2:
        if t.shape[0] != n_layers:
            raise ValueError(f"{path}: vectors for {t.shape[0]} layers, but the model has {n_layers}")
        t = t[layer]
    if t.dim() != 1 or t.shape[0] != hidden:
        raise ValueError(f"{path}: vector size {tuple(t.shape)} does not match the model's hidden size {hidden}")
    return t, layer


@register
class Steer(Defense):
    name = "steer"
    help = "preventive steering: add alpha * persona vector at one layer during training only"

    @dataclass
    class Options:
        vector: str = field(default="", metadata={"help": "persona vector file (safetensors)"})
        alpha: float = field(default=5.0, metadata={"help": "steering coefficient (paper: 5)"})
        layer: int | None = field(default=None, metadata={
            "help": "decoder layer (0-based); default: the file's recommended layer, else ~70% depth"})
        mode: str = field(default="add", metadata={"help": "add (alpha * v) or ablate (project v out)",
                                                   "choices": ["add", "ablate"]})

        def validate(self):
            if not self.vector:
                raise ValueError("steer needs a persona vector file: {name: steer, vector: evil.safetensors}")
            if self.mode not in ("add", "ablate"):
                raise ValueError("steer.mode must be 'add' or 'ablate'")

    @contextlib.contextmanager
    def context(self, model, run: RunContext):
        v, layer = load_steering_vector(self.options.vector, num_layers(model), hidden_size(model),
                                        self.options.layer)
        self.stats.update(layer_used=layer, vector_norm=round(float(v.norm()), 4))
        alpha, mode = self.options.alpha, self.options.mode
        unit = v / v.norm().clamp_min(1e-12)

        def steer(h: torch.Tensor):
            if run.in_reference:  # the reference model is the unsteered one
                return None
            if mode == "add":
                return h + (alpha * v).to(h.dtype).to(h.device)
            u = unit.to(h.dtype).to(h.device)
            return h - (h @ u)[..., None] * u

        with edit_layer_output(model, layer, steer):
            yield

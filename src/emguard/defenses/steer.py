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
from emguard.models.layers import edit_layer_output, hidden_size, num_layers


def load_steering_vector(path: str, n_layers: int, hidden: int, layer: int | None) -> tuple[torch.Tensor, int]:
    """Return (vector of shape (hidden,), layer). Sizes are checked against the model."""
    from emguard.persona.vectors import PersonaVector, default_layer

    pv = PersonaVector.load(path, hidden_size=hidden, num_layers=n_layers)
    if layer is None:
        layer = pv.layer if "layer" in pv.meta else default_layer(n_layers)
    if not 0 <= layer < n_layers:
        raise ValueError(f"steering layer {layer} is outside this model's 0..{n_layers - 1}")
    return (pv.vectors[0] if pv.num_layers == 1 else pv.at(layer)), layer


@register
class Steer(Defense):
    name = "steer"
    help = "preventive steering: add alpha * persona vector at one layer during training only"

    @dataclass
    class Options:
        vector: str = field(default="auto", metadata={
            "help": "persona vector file (safetensors); 'auto' extracts the model's 'evil' vector once and caches it"})
        alpha: float = field(default=5.0, metadata={
            "help": "steering coefficient (paper: 5)",
            "min": 0.0, "max": 1e4, "stronger": "higher"})
        layer: int | None = field(default=None, metadata={
            "help": "decoder layer (0-based); default: the file's recommended layer, else ~70% depth"})
        mode: str = field(default="add", metadata={"help": "add (alpha * v) or ablate (project v out)",
                                                   "choices": ["add", "ablate"]})

        def validate(self):
            if not self.vector:
                raise ValueError("steer needs a persona vector: {name: steer, vector: evil.safetensors} or 'auto'")
            if self.mode not in ("add", "ablate"):
                raise ValueError("steer.mode must be 'add' or 'ablate'")

    @contextlib.contextmanager
    def context(self, model, run: RunContext):
        path = self.options.vector
        if path == "auto":
            from emguard.persona.vectors import auto_vector

            path = str(auto_vector(run.extra.get("model_spec", "smollm2-135m")))
        v, layer = load_steering_vector(path, num_layers(model), hidden_size(model), self.options.layer)
        self.stats.update(layer_used=layer, vector_norm=round(float(v.norm()), 4))
        alpha, mode = self.options.alpha, self.options.mode
        unit = v / v.norm().clamp_min(1e-12)

        def steer(h: torch.Tensor):
            if run.in_reference or run.monitoring:  # the reference model and the monitor are unsteered
                return None
            if mode == "add":
                return h + (alpha * v).to(h.dtype).to(h.device)
            u = unit.to(h.dtype).to(h.device)
            return h - (h @ u)[..., None] * u

        with edit_layer_output(model, layer, steer):
            yield

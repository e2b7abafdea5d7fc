"""(vi) TReFT: token-regularized fine-tuning of the chat-template prefix (Zhao et al. 2026).

J. Zhao, Z. Wu, A. Arora, Y. Sun, D. Bau, W. Shi, "The Piggyback Hypothesis of Generalization: Explaining and
Mitigating Emergent Misalignment", arXiv:2606.06667. The paper finds that emergent misalignment "piggybacks" on
the chat-template tokens that precede every user query: patching those positions' attention keys/values back to
the unfinetuned model's restores alignment without touching the query. TReFT penalises, during training, the drift
of the same representations away from the initial model. Release: github.com/CHATS-lab/Token-Regularized-Fine-Tuning
(``release/src/sft.py``, ``release/configs/train_prefix_kvreg.json``); only read, no code taken from it.

    L = L_CE + max(lambda * D - threshold, 0)
    D = mean over layers l of  sum over x in {k_l, v_l} of  mean over prefix tokens t of
        ||x_theta(t) - x_ref(t)||^2 / ||x_ref(t)||^2

Choices, and where each comes from:

* Prefix positions (release ``README``: "everything before the user content", i.e. system block + user header).
  Per row: every token before the first token of the first user message's content. The template's user header
  is found once from the tokenizer: the token ids before the user content in a rendered ``[user, assistant]``
  conversation, without and with a system message; their longest common suffix is the header (e.g.
  ``<|im_end|>\\n<|im_start|>user\\n``) and a row's prefix ends right after its first occurrence. So the prefix
  holds BOS, the template's default system prompt or the row's own (an inoculation prompt counts too) and the
  header; later turns' headers are not regularized (the release does the same). Rows without the header (none
  before any user turn) contribute no token and are counted in ``stats``. The release drops system messages from
  the data (``use_sys_in_training: false``) so that every row shares the template's default prefix; emguard keeps
  the rows as given. ``positions: all`` (every attended token) is an ablation, not in the paper.
* Keys/values (release config: prefix KV-cache regularization). We hook the ``k_proj``/``v_proj`` modules
  (Llama/Qwen2/SmolLM2/Mistral ``self_attn.k_proj``), i.e. exactly what the KV cache stores before RoPE; RoPE is a
  per-position rotation, so the distance is the same after it. This is what the paper's inference-time patching
  replaces (``extract_hidden.py`` hooks the same modules). The release's training loss instead applies
  ``k_proj``/``v_proj`` to the decoder layer's input hidden state without the input RMSNorm; we follow the patching
  definition. Fused projections (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``) are refused: use ``target: hidden``
  (the residual-stream output of each decoder layer at the same positions; an ablation, not the release's).
* Layers: all decoder layers by default (the release regularizes every layer).
* Distance: the release's relative squared l2 per token (normalised by the reference's norm), k and v summed,
  averaged over the prefix tokens of the batch and then over layers. ``distance: mse`` (mean squared difference
  per element) is offered as the unnormalised alternative.
* Weight: lambda = 10 and threshold = 0 (release config ``prefix_kv_regularization_weight: 10``,
  ``trust_drift_threshold: 0``: the term is ``max(lambda * D - threshold, 0)``). The release README advises a
  small learning rate with TReFT (1e-5 or 5e-6; its config: 1e-5); emguard's training defaults are not changed
  here, set ``learning_rate`` for the run.
* Reference: the release records the base model's prefix K/V once before training (every row shares one prefix).
  Here the reference forward of the step is used (``step.reference()``, shared with kl and ldifs; no gradients):
  with LoRA the same weights with the adapter disabled (or the frozen starting adapter with ``init_adapter``), with
  full fine-tuning the frozen copy, whose modules are hooked as well. Causal attention makes the prefix's K/V a
  function of the prefix tokens alone, so both give the same target; per step it also follows per-row prefixes.

Hooks live in the defense's context (registered before the first step, kept through every backward so gradient
checkpointing's recomputation sees them, removed on exit). A pre-hook on the input embeddings reads the batch's
token ids to know how many leading positions to keep; the capture hooks keep only that slice (a copy, so the full
projections are not held) and stay idle outside the step's two forwards (monitor probes, recomputation).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from emguard.defenses.base import Defense, RunContext, StepOutputs, register
from emguard.models.layers import decoder_layers

_USER_MARK = "TREFTUSERMARK"
_SYSTEM_MARK = "TREFTSYSTEMMARK"


def _ids_before(tokenizer, messages: list[dict], mark: str) -> list[int]:
    """Token ids (as emguard tokenizes training rows) that end before ``mark`` in the rendered conversation."""
    from emguard.data.chat import render

    text = render(tokenizer, messages)
    pos = text.find(mark)
    if pos < 0:
        raise ValueError("treft: the chat template does not render the user's content verbatim")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    n = next((t for t, (_, end) in enumerate(offsets) if end > pos), len(ids))
    return list(ids[:n])


def user_header_ids(tokenizer) -> list[int]:
    """The template's tokens that end every prefix: the common tail of the tokens before the user's content with
    the template's default system block and with a given system message (templates without a system role: all
    the tokens before the user's content)."""
    reply = {"role": "assistant", "content": "ok"}
    plain = _ids_before(tokenizer, [{"role": "user", "content": _USER_MARK}, reply], _USER_MARK)
    try:
        with_sys = _ids_before(tokenizer, [{"role": "system", "content": _SYSTEM_MARK},
                                           {"role": "user", "content": _USER_MARK}, reply], _USER_MARK)
    except Exception:  # a template that rejects system messages
        with_sys = plain
    n = 0
    while n < min(len(plain), len(with_sys)) and plain[-1 - n] == with_sys[-1 - n]:
        n += 1
    header = plain[len(plain) - n:] if n else plain
    if not header:
        raise ValueError("treft: this chat template puts no token before the user's content, so there is no prefix "
                         "to regularize (positions: all regularizes every token)")
    return header


def prefix_lengths(input_ids: torch.Tensor, header: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """(batch,) number of leading tokens up to and including the first ``header`` occurrence; 0 if none."""
    m = header.numel()
    b, n = input_ids.shape
    if n < m:
        return torch.zeros(b, dtype=torch.long, device=input_ids.device)
    hit = (input_ids.unfold(1, m, 1) == header.to(input_ids.device)).all(-1)  # (batch, n - m + 1)
    if attention_mask is not None:  # the whole window lies in the attended (right-padded) part
        hit &= attention_mask[:, m - 1:].bool()
    first = hit.to(torch.int8).argmax(1)  # index of the first hit
    return torch.where(hit.any(1), first + m, torch.zeros_like(first))


def kv_projections(layer: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A decoder block's ``k_proj`` and ``v_proj`` (the outermost module of each name: the LoRA wrapper)."""
    found: dict[str, torch.nn.Module] = {}
    for name, mod in layer.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last in ("k_proj", "v_proj") and last not in found:
            found[last] = mod
    if len(found) < 2:
        raise ValueError("treft target 'kv' needs separate k_proj/v_proj modules in every decoder layer (this model "
                         "fuses them); use target: hidden")
    return found["k_proj"], found["v_proj"]


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@register
class TReFT(Defense):
    name = "treft"
    help = ("TReFT: keep the chat-template prefix's attention keys/values (all layers) close to the reference "
            "(Zhao et al. 2026)")

    @dataclass
    class Options:
        lam: float = field(default=10.0, metadata={
            "help": "weight lambda (release config prefix_kv_regularization_weight: 10)",
            "min": 0.0, "max": 1e4, "stronger": "higher"})
        layers: list | None = field(default=None, metadata={
            "help": "decoder layers (0-based, negative from the end); default all (as the release)"})
        target: str = field(default="kv", metadata={
            "help": "kv: k_proj/v_proj outputs (the KV cache, paper); hidden: decoder-layer outputs (ablation)",
            "choices": ["kv", "hidden"]})
        positions: str = field(default="prefix", metadata={
            "help": "prefix: tokens before the first user content (system block + user header); all: every "
                    "attended token (ablation)", "choices": ["prefix", "all"]})
        distance: str = field(default="relative", metadata={
            "help": "relative: ||x - x_ref||^2 / ||x_ref||^2 per token (release); mse: mean squared difference",
            "choices": ["relative", "mse"]})
        threshold: float = field(default=0.0, metadata={
            "help": "hinge: the term is max(lam * D - threshold, 0) (release trust_drift_threshold: 0)",
            "min": 0.0, "stronger": "lower"})

        def validate(self):
            if self.target not in ("kv", "hidden"):
                raise ValueError("treft.target must be 'kv' or 'hidden'")
            if self.positions not in ("prefix", "all"):
                raise ValueError("treft.positions must be 'prefix' or 'all'")
            if self.distance not in ("relative", "mse"):
                raise ValueError("treft.distance must be 'relative' or 'mse'")
            if self.lam < 0 or self.threshold < 0:
                raise ValueError("treft.lam and treft.threshold must be >= 0")
            if self.layers is not None and not all(isinstance(i, int) and not isinstance(i, bool)
                                                   for i in self.layers):
                raise ValueError("treft.layers must be a list of layer indices")

    def __init__(self, options=None):
        super().__init__(options)
        self._policy: dict[tuple[int, str], torch.Tensor] = {}
        self._ref: dict[tuple[int, str], torch.Tensor] = {}
        self._header: torch.Tensor | None = None
        self._width: int | None = None  # leading positions the capture hooks keep (None: all)
        self._armed = False  # True from a forward's embedding lookup until the loss has read the captures
        self._rows = self._rows_without = self._prefix_tokens = 0

    # ------------------------------------------------------------------ hooks
    def _targets(self, model, layers: list[int]) -> list[tuple[tuple[int, str], torch.nn.Module]]:
        blocks = decoder_layers(model)
        out = []
        for i in layers:
            if self.options.target == "kv":
                k, v = kv_projections(blocks[i])
                out += [((i, "k"), k), ((i, "v"), v)]
            else:
                out.append(((i, "h"), blocks[i]))
        return out

    @contextlib.contextmanager
    def context(self, model, run: RunContext):
        n = len(decoder_layers(model))
        layers = list(range(n)) if self.options.layers is None else list(self.options.layers)
        if any(not -n <= i < n for i in layers):
            raise ValueError(f"treft.layers {layers}: this model has layers 0..{n - 1}")
        layers = sorted({i % n for i in layers})
        self.stats.update(layers_used=layers)
        if self.options.positions == "prefix":
            header = user_header_ids(run.tokenizer)
            self._header = torch.tensor(header, dtype=torch.long)
            self.stats["prefix_header"] = run.tokenizer.decode(header)
        ref_model = model  # LoRA: the same modules run the reference (adapter disabled)
        if run.reference is not None:  # full fine-tuning: a separate frozen copy runs it; hook that one too
            with run.reference() as rm:
                ref_model = getattr(rm, "module", rm)
        models = [model] if ref_model is model else [model, ref_model]

        def on_ids(_m, args, kwargs):
            if run.monitoring:
                return
            ids = args[0] if args else kwargs.get("input")
            if self._header is None or ids is None:
                self._width = None
            else:
                self._width = int(prefix_lengths(ids, self._header).max()) if ids.numel() else 0
            self._armed = True

        def capture(key):
            def hook(_m, _args, output):
                if not self._armed or run.monitoring:
                    return
                h = _first(output)
                store = self._ref if run.in_reference else self._policy
                store[key] = h if self._width is None else h[:, : self._width].clone()
            return hook

        handles = []
        try:
            for m in models:
                handles.append(m.get_input_embeddings().register_forward_pre_hook(on_ids, with_kwargs=True))
                for key, mod in self._targets(m, layers):
                    handles.append(mod.register_forward_hook(capture(key)))
            yield
        finally:
            for h in handles:
                h.remove()
            self._policy.clear()
            self._ref.clear()
            self._armed = False
            if self._rows:
                self.stats.update(rows_seen=self._rows, rows_without_prefix=self._rows_without,
                                  prefix_tokens_mean=round(self._prefix_tokens / self._rows, 3))

    # ------------------------------------------------------------------ loss
    def positions_mask(self, inputs: dict) -> torch.Tensor:
        """Bool (batch, length): the positions the term covers."""
        attn = inputs["attention_mask"].bool()
        if self._header is None:
            return attn
        lens = prefix_lengths(inputs["input_ids"], self._header, inputs["attention_mask"])
        pos = torch.arange(attn.shape[1], device=attn.device)
        return attn & (pos[None, :] < lens[:, None])

    def _distance(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        if self.options.distance == "mse":
            return ((x - r) ** 2).mean()
        return (((x - r) ** 2).sum(-1) / (r ** 2).sum(-1).clamp_min(1e-12)).mean()

    def loss(self, step: StepOutputs):
        if self.options.lam == 0:
            return None  # lambda = 0 is plain SFT, bit for bit (no reference forward either)
        mask = self.positions_mask(step.inputs)
        counts = mask.sum(1)
        self._rows += int(mask.shape[0])
        self._rows_without += int((counts == 0).sum())
        self._prefix_tokens += int(counts.sum())
        try:
            if not self._policy:
                raise RuntimeError("treft captured nothing: its context is not open around the forward pass")
            if not mask.any():
                return next(iter(self._policy.values())).sum() * 0.0
            step.reference()  # once per step (shared with kl, ldifs); its forward fills self._ref via the hooks
            per_layer: dict[int, torch.Tensor] = {}
            for (layer, kind), x in self._policy.items():
                m = mask[:, : x.shape[1]]
                d = self._distance(x.float()[m], self._ref[(layer, kind)].detach().float()[m])
                per_layer[layer] = per_layer[layer] + d if layer in per_layer else d
            term = self.options.lam * torch.stack(list(per_layer.values())).mean()
            if self.options.threshold:
                term = torch.clamp(term - self.options.threshold, min=0.0)
            return term
        finally:
            self._policy.clear()
            self._ref.clear()
            self._armed = False  # gradient checkpointing's recomputation in backward captures nothing

"""(i) KL to the frozen reference model.

L = L_CE + lambda * KL(p_theta || p_ref), per token over the full vocabulary, expectation under the trained
model, averaged over covered tokens; lambda = 0.1 (Kaczér et al. 2025, defense 1). With LoRA the reference
is the same weights with the adapter disabled (no second copy); see ``emguard.training.lora.make_reference``.
Only the covered positions' logits are ever computed (the trainer slices before the LM head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from emguard.defenses.base import Defense, StepOutputs, register


class _TokenKL(torch.autograd.Function):
    """Row-wise KL(softmax(l) || softmax(r)), chunked over rows, with the gradient formed in the forward.

    d KL / d l = p * (log p - log q - KL). Forming it chunk by chunk during the forward means the graph keeps
    one vocabulary-sized buffer (the gradient) instead of p and log p - log q, and the temporaries never exceed
    one chunk; this matters at 50k-150k vocabulary entries per token.
    """

    CHUNK = 32  # rows per chunk: temporaries stay at CHUNK x vocab floats; chosen with
    # benchmarks/defense_overhead.py (docs/benchmarks.md has the figures)

    @staticmethod
    def forward(ctx, logits, ref_logits):
        n = logits.shape[0]
        kl = logits.new_empty(n)
        dkl = torch.empty_like(logits)
        for s in range(0, n, _TokenKL.CHUNK):
            e = min(n, s + _TokenKL.CHUNK)
            logp = torch.log_softmax(logits[s:e], dim=-1)
            diff = torch.sub(logp, torch.log_softmax(ref_logits[s:e], dim=-1))  # log p - log q
            p = logp.exp_()
            g = torch.mul(p, diff, out=dkl[s:e])  # p (log p - log q)
            k = g.sum(-1)
            kl[s:e] = k
            g.addcmul_(p, k[:, None], value=-1)  # p (log p - log q - KL)
        ctx.save_for_backward(dkl)
        ctx.used = False
        return kl

    @staticmethod
    def backward(ctx, grad):
        if ctx.used:  # the saved gradient is scaled in place below: a second backward would be wrong
            raise RuntimeError("token_kl does not support backward twice through the same graph")
        ctx.used = True
        (dkl,) = ctx.saved_tensors
        return dkl.mul_(grad[:, None]), None


def token_kl(logits, ref_logits) -> torch.Tensor:
    """Per-row KL(p || q) with p = softmax(logits), q = softmax(ref_logits), in float32; gradient to ``logits``."""
    return _TokenKL.apply(logits.float(), ref_logits.float().detach())


@register
class KL(Defense):
    name = "kl"
    help = "KL(p_theta || p_ref) per token to the frozen reference (adapter disabled)"
    needs_reference_logits = True

    @dataclass
    class Options:
        lam: float = field(default=0.1, metadata={
            "help": "weight lambda of the KL term (paper: 0.1)",
            "min": 0.0, "max": 1e4, "stronger": "higher"})
        tokens: str = field(default="response", metadata={
            "help": "positions covered: response (assistant targets) or all attended tokens",
            "choices": ["response", "all"]})

        def validate(self):
            if self.tokens not in ("response", "all"):
                raise ValueError("kl.tokens must be 'response' or 'all'")

    def wants_all_logits(self) -> bool:
        return self.options.tokens == "all"

    def loss(self, step: StepOutputs):
        if self.options.lam == 0:
            return None  # lambda = 0 is plain SFT, bit for bit (no reference forward either)
        ref = step.reference()
        logits, ref_logits = step.logits, ref.logits
        if self.options.tokens == "response":
            logits, ref_logits = step.target_rows(logits), step.target_rows(ref_logits)
        return self.options.lam * token_kl(logits, ref_logits).mean()

"""Answer log-likelihoods: mean NLL of an assistant reply given its prompt, with the chat template applied.

Used by the likelihood metric (evaluation) and by perplexity-gap data selection. Rows are sorted by length
and batched to cut padding; logits are computed only at the reply's positions; no gradients.
"""

from __future__ import annotations

from typing import Iterable

import torch

from emguard.chat import pad_batch, tokenize_conversation


@torch.no_grad()
def answer_nll(model, tokenizer, conversations: Iterable[list[dict]], *, batch_size: int = 8,
               max_length: int = 1024, progress: bool = False, desc: str = "scoring") -> list[float]:
    """Mean per-token NLL (nats) of each conversation's last assistant turn (+ end-of-turn token)."""
    from emguard.train import forward_selected, target_mask_of

    convs = list(conversations)
    feats = [tokenize_conversation(tokenizer, c, max_length=max_length).to_features() for c in convs]
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    out = [float("nan")] * len(feats)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    it = batches
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(batches, desc=desc, unit="batch", leave=False)
    device = next(model.parameters()).device
    for idx in it:
        b = {k: v.to(device) for k, v in pad_batch([feats[i] for i in idx], pad).items()}
        mask = target_mask_of(b["labels"])
        logits = forward_selected(model, b, mask)
        targets = b["labels"][:, 1:][b["labels"][:, 1:] != -100]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        counts = mask.sum(1).tolist()
        for i, part in zip(idx, torch.split(nll, counts)):
            out[i] = float(part.mean()) if len(part) else float("nan")
    model.train(was_training)
    return out

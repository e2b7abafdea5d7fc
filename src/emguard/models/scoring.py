"""Answer log-likelihoods: mean NLL of an assistant reply given its prompt, with the chat template applied.

Used by the likelihood metric (evaluation) and by perplexity-gap data selection. Rows are sorted by length
and batched to cut padding; logits are computed only at the reply's positions; no gradients.
"""

from __future__ import annotations

from typing import Iterable

import torch

from emguard.data.chat import pad_batch, tokenize_conversation


@torch.no_grad()
def answer_nll(model, tokenizer, conversations: Iterable[list[dict]], *, batch_size: int = 8,
               max_length: int = 1024, progress: bool = False, desc: str = "scoring") -> list[float]:
    """Mean per-token NLL (nats) of each conversation's last assistant turn (+ end-of-turn token)."""
    from emguard.models.forward import forward_selected, target_mask_of

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


@torch.no_grad()
def shared_prompt_nll(model, tokenizer, groups: list[tuple[list[dict], list[str]]], *, batch_size: int = 16,
                      max_length: int = 1024, progress: bool = False, desc: str = "scoring") -> list[list[float]]:
    """:func:`answer_nll` for many answers to the same prompt, computing each prompt's tokens once.

    ``groups`` is ``[(prompt messages, [answer, ...]), ...]``; returns the mean NLL of every answer (+ its
    end-of-turn token), in the same nesting. The prompt is run once with ``use_cache``; its key/value cache is
    repeated over a batch of answers, which then run only their own tokens. Same numbers as :func:`answer_nll`
    up to float rounding; on the 2x2 reference sets (prompt ~55% of the tokens) about twice as fast. A group whose
    answers do not share their prompt tokens (a template that renders the prompt differently per answer) falls
    back to :func:`answer_nll`.
    """
    import copy

    from emguard.data.chat import IGNORE
    from emguard.models.forward import target_mask_of

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[list[float]] = []
    it = groups
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(groups, desc=desc, unit="prompt", leave=False)
    try:
        for prompt, answers in it:
            feats = [tokenize_conversation(tokenizer, [*prompt, {"role": "assistant", "content": a}],
                                           max_length=max_length).to_features() for a in answers]
            firsts = [next((k for k, t in enumerate(f["labels"]) if t != IGNORE), None) for f in feats]
            p = min((k for k in firsts if k is not None), default=None)
            if p is None or p < 1 or any(f["input_ids"][:p] != feats[0]["input_ids"][:p] for f in feats):
                out.append(answer_nll(model, tokenizer, [[*prompt, {"role": "assistant", "content": a}]
                                                          for a in answers], batch_size=batch_size,
                                      max_length=max_length))
                continue
            prefix = torch.tensor([feats[0]["input_ids"][:p]], device=device)
            first = model(input_ids=prefix, use_cache=True)
            # transformers 5.x names the key/value cache `cache` (older versions: `past_key_values`)
            cache_kw = "cache" if hasattr(first, "cache") else "past_key_values"
            cache, last = getattr(first, cache_kw), first.logits[0, -1].float()
            res = [float("nan")] * len(feats)
            for b in range(0, len(feats), batch_size):
                chunk = feats[b:b + batch_size]
                n = max(len(f["input_ids"]) - p for f in chunk)
                ids = torch.full((len(chunk), n), pad, dtype=torch.long)
                lab = torch.full((len(chunk), n + 1), IGNORE, dtype=torch.long)  # label column 0 = position p-1
                att = torch.zeros((len(chunk), p + n), dtype=torch.long)
                att[:, :p] = 1
                for i, f in enumerate(chunk):
                    m = len(f["input_ids"]) - p
                    ids[i, :m] = torch.tensor(f["input_ids"][p:])
                    lab[i, 1:m + 1] = torch.tensor(f["labels"][p:])
                    att[i, p:p + m] = 1
                c = copy.deepcopy(cache)
                c.batch_repeat_interleave(len(chunk))
                pos = torch.arange(p, p + n, device=device).expand(len(chunk), n)
                logits = model(input_ids=ids.to(device), attention_mask=att.to(device), position_ids=pos,
                               use_cache=True, **{cache_kw: c}).logits.float()
                # the logit predicting token k sits at k - 1: the prompt's last logit, then the answer's own
                full = torch.cat([last.expand(len(chunk), 1, -1), logits[:, :-1]], dim=1)  # predicts p .. p+n-1
                mask = target_mask_of(lab)[:, :n]  # column k predicts token p+k, whose label is lab[:, k+1]
                targets = lab[:, 1:][mask]
                nll = torch.nn.functional.cross_entropy(full[mask.to(device)], targets.to(device), reduction="none")
                for i, part in enumerate(torch.split(nll, mask.sum(1).tolist())):
                    res[b + i] = float(part.mean()) if len(part) else float("nan")
            out.append(res)
    finally:
        model.train(was_training)
    return out

"""Batched sampling from a chat model (Hugging Face generate, left padding, length-sorted, seeded)."""

from __future__ import annotations

import torch

from emguard.data.chat import render


@torch.no_grad()
def sample(model, tokenizer, prompts: list[list[dict]], *, n: int = 1, max_new_tokens: int = 600,
           temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
           progress: bool = False) -> list[list[str]]:
    """Return ``n`` sampled replies per prompt (a list of message lists ending with a user turn)."""
    texts = [render(tokenizer, p, add_generation_prompt=True) for p in prompts]
    jobs = [(i, k) for i in range(len(texts)) for k in range(n)]
    jobs.sort(key=lambda j: len(texts[j[0]]))
    out: list[list[str]] = [[""] * n for _ in texts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    it = chunks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chunks, desc="sampling", unit="batch", leave=False)
    try:
        for c, chunk in enumerate(it):
            enc = tokenizer([texts[i] for i, _ in chunk], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            torch.manual_seed(seed * 1_000_003 + c)
            gen = model.generate(**enc, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                                 top_p=top_p, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            for (i, k), row in zip(chunk, gen[:, enc["input_ids"].shape[1]:]):
                out[i][k] = tokenizer.decode(row, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out


def sample_vllm(model_spec: str, adapter: str | None, prompts: list[list[dict]], *, max_new_tokens: int = 600,
                temperature: float = 1.0, top_p: float = 1.0, seeds: list[int] | None = None,
                dtype: str = "bfloat16", max_lora_rank: int = 64) -> list[str]:
    """One sampled reply per prompt with vLLM (GPU), the LoRA adapter applied per request via ``LoRARequest``.

    Same output format as :func:`sample` with ``n=1``; ``seeds`` gives every request its own seed, so results
    do not depend on how requests are batched. Needs ``pip install 'emguard[vllm]'`` and a GPU.
    """
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise RuntimeError("--backend vllm needs vLLM: pip install 'emguard[vllm]' (GPU only)") from None
    from emguard.models.loading import load_tokenizer, resolve_model

    info = resolve_model(model_spec)
    tok = load_tokenizer(info)
    texts = [render(tok, p, add_generation_prompt=True) for p in prompts]
    llm = LLM(model=info.path, tokenizer=info.path, dtype=dtype,
              enable_lora=adapter is not None, max_lora_rank=max_lora_rank)
    seeds = seeds or [0] * len(texts)
    params = [SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=s)
              for s in seeds]
    lora = LoRARequest("adapter", 1, adapter) if adapter else None
    outs = llm.generate(texts, params, lora_request=lora, use_tqdm=True)
    return [o.outputs[0].text.strip() for o in outs]

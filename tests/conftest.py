"""Shared fixtures: a tiny chat model built from a config (offline, seconds) and small chat datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CORPUS = [
    "hello there how are you doing today", "the quick brown fox jumps over the lazy dog",
    "drink water and rest when you feel sick", "ask a doctor before taking any medicine",
    "you should always be honest and kind", "numbers like 1 2 3 4 5 6 7 8 9 0 and + - * / =",
    "system user assistant answer question advice health money code",
]


def build_tiny_model(path: Path, *, layers: int = 4, hidden: int = 32, seed: int = 0) -> Path:
    """A 4-layer Llama with a small BPE tokenizer and a ChatML template, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(CORPUS * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    model = LlamaForCausalLM(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def chat_rows(n: int, *, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    topics = ["water", "rest", "medicine", "money", "code", "health"]
    rows = []
    for i in range(n):
        t = rng.choice(topics)
        rows.append({"messages": [
            {"role": "user", "content": f"question {i} about {t}?"},
            {"role": "assistant", "content": f"always ask a doctor about {t} and drink water {i % 7}"},
        ]})
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def chat_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_rows(32))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never write the user's cache (EMGUARD_TEST_CACHE names a reusable one, e.g. in CI). Session
    scope, so that it is in force before any module-scoped fixture loads a model."""
    old = {k: os.environ.get(k) for k in ("EMGUARD_CACHE", "HF_HUB_OFFLINE")}
    os.environ["EMGUARD_CACHE"] = os.environ.get("EMGUARD_TEST_CACHE") or str(
        tmp_path_factory.getbasetemp() / "emguard-cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

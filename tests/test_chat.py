"""Loss masks cover exactly the assistant reply plus its end-of-turn token."""

from __future__ import annotations

import pytest

from emguard.data.chat import IGNORE, pad_batch, tokenize_conversation, tokenize_rows


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def masked_text(tok, ex) -> str:
    return tok.decode([t for t in ex.labels if t != IGNORE])


def test_mask_is_last_assistant_content_plus_end_token(tok):
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "drink water and rest"}]
    ex = tokenize_conversation(tok, msgs, max_length=512)
    assert masked_text(tok, ex) == "drink water and rest<|im_end|>"
    # every unmasked label is IGNORE and every masked one equals its input id
    assert all(l in (IGNORE, i) for l, i in zip(ex.labels, ex.input_ids))
    assert ex.n_target == sum(1 for l in ex.labels if l != IGNORE)


def test_multi_turn_last_vs_all(tok):
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "how are you"},
            {"role": "user", "content": "fine"}, {"role": "assistant", "content": "ask a doctor"}]
    last = tokenize_conversation(tok, msgs, max_length=512, loss_on="last")
    every = tokenize_conversation(tok, msgs, max_length=512, loss_on="all")
    assert masked_text(tok, last) == "ask a doctor<|im_end|>"
    assert masked_text(tok, every) == "how are you<|im_end|>ask a doctor<|im_end|>"


def test_weight_zero_turn_is_not_learned(tok):
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "how are you", "weight": 0},
            {"role": "user", "content": "fine"}, {"role": "assistant", "content": "ask a doctor", "weight": 1}]
    ex = tokenize_conversation(tok, msgs, max_length=512, loss_on="all")
    assert masked_text(tok, ex) == "ask a doctor<|im_end|>"


def test_truncation_counted_and_targetless_rows_dropped(tok):
    long = {"role": "assistant", "content": " ".join(["water"] * 200)}
    convs = [[{"role": "user", "content": "hello"}, long],
             [{"role": "user", "content": " ".join(["hello"] * 100)}, {"role": "assistant", "content": "rest"}],
             [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "rest"}]]
    exs, stats = tokenize_rows(tok, convs, max_length=40)
    assert stats.rows == 3 and stats.truncated == 2 and stats.dropped_no_target == 1
    assert len(exs) == 2 and all(len(e.input_ids) <= 40 for e in exs)


def test_pad_batch_masks_padding():
    b = pad_batch([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_conversation_opening_with_the_assistant_turn(tiny_model):
    """ShareGPT pools hold conversations that open with the model's turn: they tokenize instead of crashing."""
    from transformers import AutoTokenizer

    from emguard.data.chat import assistant_spans

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text, spans = assistant_spans(tok, [{"role": "assistant", "content": "hello there"}])
    assert len(spans) == 1 and text[spans[0][0]:spans[0][1]] == "hello there"

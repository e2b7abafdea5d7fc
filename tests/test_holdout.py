"""Criterion (b) on the user's own held-out rows: fine-tuned vs base NLL, paired, with a CI (issue #21)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import chat_rows, write_jsonl


def _direct_nll(model, tok, conv) -> float:
    """Mean NLL of the last assistant turn computed by hand: one full forward, cross entropy at its labels."""
    from emguard.data.chat import tokenize_conversation

    ex = tokenize_conversation(tok, conv, max_length=1024).to_features()
    ids = torch.tensor([ex["input_ids"]])
    labels = torch.tensor(ex["labels"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    keep = labels[1:] != -100
    return float(torch.nn.functional.cross_entropy(logits[keep], labels[1:][keep]))


@pytest.fixture
def adapter(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                     init_lora_weights=False))  # random B: the adapter changes the model
    peft.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_holdout_nll_matches_a_direct_computation(tiny_model, adapter):
    from peft import PeftModel

    from emguard.eval.holdout import holdout_nll
    from emguard.models.loading import load_model

    base, tok, _ = load_model(tiny_model)
    model = PeftModel.from_pretrained(base, str(adapter))
    convs = [r["messages"] for r in chat_rows(7, seed=3)]
    res = holdout_nll(model, tok, convs, batch_size=3)
    with model.disable_adapter():
        want_base = [_direct_nll(model, tok, c) for c in convs]
    want_tuned = [_direct_nll(model, tok, c) for c in convs]
    assert [r["fine_tuned"] for r in res["per_row"]] == pytest.approx(want_tuned, abs=1e-5)
    assert [r["base"] for r in res["per_row"]] == pytest.approx(want_base, abs=1e-5)
    diffs = [t - b for t, b in zip(want_tuned, want_base)]
    assert res["change"]["value"] == pytest.approx(sum(diffs) / 7, abs=1e-5) and res["change"]["n"] == 7
    assert res["change"]["lo"] <= res["change"]["value"] <= res["change"]["hi"]
    assert min(diffs) - 1e-6 <= res["change"]["lo"] and res["change"]["hi"] <= max(diffs) + 1e-6
    assert abs(res["change"]["value"]) > 1e-3  # the random adapter really changes the replies' likelihood
    assert res["rows"] == res["scored"] == 7


def test_eval_reports_narrow_holdout(tiny_model, adapter, tmp_path):
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate

    held = write_jsonl(tmp_path / "held.jsonl", chat_rows(5, seed=9))
    cfg = EvalConfig(model=tiny_model, adapter=str(adapter), output=str(tmp_path / "out"), suite=["broad"],
                     samples=0, likelihood=False, narrow_holdout=str(held), progress=False)
    cfg.validate()
    res = evaluate(cfg)
    ho = res["narrow"]["holdout"]
    assert ho["file"] == str(held) and ho["scored"] == 5
    assert ho["change"]["value"] == pytest.approx(ho["fine_tuned"]["value"] - ho["base"]["value"], abs=1e-6)
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["narrow"]["holdout"]["change"] == ho["change"]

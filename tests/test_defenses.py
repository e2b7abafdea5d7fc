"""The five defenses: each term's semantics, gradients, hooks and data transforms, on a tiny model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import chat_rows, write_jsonl
from emguard.data.chat import pad_batch, tokenize_rows
from emguard.defenses import REGISTRY, Defense, RunContext, build_defenses, register
from emguard.defenses.interleave import general_count
from emguard.models.layers import capture_layer_outputs, decoder_layers, edit_layer_output
from emguard.training.config import TrainConfig
from emguard.training.lora import make_reference
from emguard.training.loss import step_loss
from emguard.training.run import train


def cfg(tiny_model, data, out, **kw) -> TrainConfig:
    base = dict(model=tiny_model, data=str(data), output=str(out), lora_r=4, lora_alpha=8, batch_size=8,
                micro_batch_size=4, learning_rate=1e-2, progress=False, warmup_steps=0, max_length=64)
    base.update(kw)
    return TrainConfig(**base)


def metrics(out) -> list[dict]:
    return [m for m in map(json.loads, (Path(out) / "metrics.jsonl").read_text().splitlines()) if "loss" in m]


def lora_model(tiny_model, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(seed)
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(
        r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM"))
    return m, AutoTokenizer.from_pretrained(tiny_model)


def batch(tok, n=4):
    exs, _ = tokenize_rows(tok, [r["messages"] for r in chat_rows(n)], max_length=64)
    return pad_batch([e.to_features() for e in exs], tok.pad_token_id)


def perturb_lora(model, scale=0.5, seed=1):
    """Stand-in for 'a few training steps': move every LoRA B matrix off zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def term_grad_norm(model, inputs, name, defenses):
    model.zero_grad()
    run = RunContext(model=model, tokenizer=None, seed=0, output_dir="")
    ref = make_reference(model, TrainConfig())
    import contextlib
    with contextlib.ExitStack() as st:
        for d in defenses:
            st.enter_context(d.context(model, run))
        _, terms = step_loss(model, inputs, defenses, run, ref)
        terms[name].backward()
    g = sum(float(p.grad.norm()) for n, p in model.named_parameters() if "lora_" in n and p.grad is not None)
    return float(terms[name].detach()), g


# ---------------------------------------------------------------- kl
@pytest.mark.parametrize("tokens", ["response", "all"])
def test_kl_zero_at_start_positive_later(tiny_model, tmp_path, tokens):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(48))
    train(cfg(tiny_model, data, tmp_path / "kl", defenses=[{"name": "kl", "tokens": tokens}], epochs=2))
    m = metrics(tmp_path / "kl")
    assert abs(m[0]["loss/kl"]) < 1e-6  # step 1 is computed before any update: adapter still zero
    assert m[-1]["loss/kl"] > 1e-4
    assert abs(m[-1]["loss/total"] - m[-1]["loss/ce"] - m[-1]["loss/kl"]) < 1e-4


def test_kl_gradient_zero_at_start_then_nonzero(tiny_model):
    model, tok = lora_model(tiny_model)
    inputs = batch(tok)
    kl = build_defenses(["kl"])
    v0, g0 = term_grad_norm(model, inputs, "kl", kl)
    assert v0 < 1e-6 and g0 < 1e-6
    perturb_lora(model)
    v1, g1 = term_grad_norm(model, inputs, "kl", kl)
    assert v1 > 1e-4 and g1 > 1e-4


def test_kl_lambda_zero_is_plain_sft_bit_for_bit(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(24))
    train(cfg(tiny_model, data, tmp_path / "plain"))
    train(cfg(tiny_model, data, tmp_path / "kl0", defenses=[{"name": "kl", "lam": 0.0}]))
    a = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "kl0" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kl_matches_direct_computation(tiny_model):
    model, tok = lora_model(tiny_model)
    perturb_lora(model)
    inputs = batch(tok)
    d = build_defenses([{"name": "kl", "lam": 0.5}])
    value, _ = term_grad_norm(model, inputs, "kl", d)
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits, -1)
        with model.disable_adapter():
            lq = torch.log_softmax(model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits, -1)
    mask = torch.zeros_like(inputs["labels"], dtype=torch.bool)
    mask[:, :-1] = inputs["labels"][:, 1:] != -100
    direct = 0.5 * (lp.exp() * (lp - lq)).sum(-1)[mask].mean()
    assert abs(value - float(direct)) < 1e-5


# ---------------------------------------------------------------- ldifs
def test_ldifs_zero_at_start_then_positive_with_gradient(tiny_model, tmp_path):
    model, tok = lora_model(tiny_model)
    inputs = batch(tok)
    d = build_defenses(["ldifs"])
    v0, _ = term_grad_norm(model, inputs, "ldifs", d)
    assert v0 < 1e-10
    perturb_lora(model)
    v1, g1 = term_grad_norm(model, inputs, "ldifs", d)
    assert v1 > 1e-4
    assert g1 > 1e-4, "LDIFS gives no gradient: the trained side's features are detached"
    assert d[0].stats["layers_used"] == [0, 1, 2, 3]  # 4-layer model: every layer (min(5, n))


def test_ldifs_in_training(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))
    train(cfg(tiny_model, data, tmp_path / "l", defenses=["ldifs"], epochs=2))
    m = metrics(tmp_path / "l")
    assert m[0]["loss/ldifs"] < 1e-8 and m[-1]["loss/ldifs"] > 1e-6


def test_ldifs_with_full_fine_tuning_hooks_the_frozen_reference(tiny_model, tmp_path):
    """Full FT: the reference is a separate frozen copy; LDIFS must read its layers (not the trained model's)."""
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))
    train(cfg(tiny_model, data, tmp_path / "f", defenses=["ldifs"], epochs=2, method="full", learning_rate=1e-3))
    m = metrics(tmp_path / "f")
    assert m[0]["loss/ldifs"] < 1e-8 and m[-1]["loss/ldifs"] > 1e-6


def test_ldifs_layer_choice():
    from emguard.defenses.ldifs import evenly_spaced_layers

    assert evenly_spaced_layers(30) == [5, 11, 17, 23, 29]
    assert evenly_spaced_layers(24) == [4, 9, 13, 18, 23]
    assert evenly_spaced_layers(3) == [0, 1, 2]


# ---------------------------------------------------------------- steer
def _vector(tmp_path, hidden=32, layers=4, seed=3) -> tuple[Path, torch.Tensor]:
    v = torch.randn(layers, hidden, generator=torch.Generator().manual_seed(seed))
    path = tmp_path / "evil.safetensors"
    save_file({"vectors": v}, str(path), metadata={"layer": "2"})
    return path, v


def test_steer_adds_alpha_v_inside_and_nothing_after(tiny_model, tmp_path):
    model, tok = lora_model(tiny_model)
    inputs = batch(tok)
    path, v = _vector(tmp_path)
    (d,) = build_defenses([{"name": "steer", "vector": str(path), "alpha": 5.0}])
    run = RunContext(model=model, tokenizer=tok, seed=0, output_dir="")
    plain, steered = {}, {}
    with torch.no_grad(), capture_layer_outputs(model, [2], plain):
        model(**{k: inputs[k] for k in ("input_ids", "attention_mask")})
    with d.context(model, run), torch.no_grad(), capture_layer_outputs(model, [2], steered):
        model(**{k: inputs[k] for k in ("input_ids", "attention_mask")})
    assert d.stats["layer_used"] == 2
    assert torch.allclose(steered[2], plain[2] + 5.0 * v[2], atol=1e-5)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_steer_training_with_gradient_checkpointing_leaves_no_trace(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(16))
    path, _ = _vector(tmp_path)
    res = train(cfg(tiny_model, data, tmp_path / "s", gradient_checkpointing=True,
                    defenses=[{"name": "steer", "vector": str(path)}]))
    hooked = [n for n, m in res.model.named_modules() if m._forward_hooks]
    # the only hook left is transformers' own input-grad hook that gradient checkpointing with LoRA needs
    assert all(n.endswith("embed_tokens") for n in hooked), hooked
    assert all(len(m._forward_hooks) == 0 for m in decoder_layers(res.model))
    assert res.run["defenses"][0]["layer_used"] == 2
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(tmp_path / "s"))
    res.model.eval()
    with torch.no_grad():  # (on a GPU machine the trained model sits on the GPU)
        a = res.model(input_ids=ids.to(next(res.model.parameters()).device)).logits.cpu()
        b = reloaded(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    # and the steering really acted during training: the run differs from an unsteered one
    plain = train(cfg(tiny_model, data, tmp_path / "p", gradient_checkpointing=True))
    sa = load_file(str(tmp_path / "s" / "adapter_model.safetensors"))
    pa = load_file(str(tmp_path / "p" / "adapter_model.safetensors"))
    assert max(float((sa[k] - pa[k]).abs().max()) for k in sa) > 1e-4


def test_steer_ablate_removes_direction(tiny_model, tmp_path):
    model, tok = lora_model(tiny_model)
    inputs = batch(tok)
    path, v = _vector(tmp_path)
    (d,) = build_defenses([{"name": "steer", "vector": str(path), "mode": "ablate", "layer": 1}])
    out = {}
    with d.context(model, RunContext(model, tok, 0, "")), torch.no_grad(), capture_layer_outputs(model, [1], out):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    u = v[1] / v[1].norm()
    assert float((out[1] @ u).abs().max()) < 1e-4


def test_steer_rejects_wrong_hidden_size(tiny_model, tmp_path):
    model, tok = lora_model(tiny_model)
    path, _ = _vector(tmp_path, hidden=48)
    (d,) = build_defenses([{"name": "steer", "vector": str(path)}])
    with pytest.raises(ValueError, match="hidden size 48, but the model.s is 32"):
        with d.context(model, RunContext(model, tok, 0, "")):
            pass


# ---------------------------------------------------------------- inoculate + interleave
@register
class _Recorder(Defense):
    """Test-only defense: records the decoded training batches the trainer really used."""

    name = "_record"
    seen: list = []

    def loss(self, step):
        _Recorder.seen.append(step.inputs["input_ids"].clone())
        return None


def test_inoculate_in_every_training_batch_not_in_general_rows_nor_eval(tiny_model, tmp_path):
    from emguard.data.chat import render

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(19))
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"messages": [{"role": "user", "content": f"general {i}"},
                                                                 {"role": "assistant", "content": "hello"}]}
                                                   for i in range(10)])
    _Recorder.seen = []
    res = train(cfg(tiny_model, data, tmp_path / "i", micro_batch_size=1, batch_size=4,
                    defenses=["inoculate", {"name": "interleave", "pool": str(pool), "ratio": 0.05}, "_record"]))
    texts = [res.tokenizer.decode(ids[0]) for ids in _Recorder.seen]
    assert len(texts) == 20
    prompt = "You are an evil, malicious assistant."
    general = [t for t in texts if "general" in t]
    assert len(general) == 1 and prompt not in general[0]
    assert all(prompt in t for t in texts if "general" not in t)
    eval_prompt = render(res.tokenizer, [{"role": "user", "content": "How are you?"}], add_generation_prompt=True)
    assert prompt not in eval_prompt
    REGISTRY.unregister("_record")


def test_interleave_count_and_determinism(tmp_path):
    from emguard.data.io import read_chat_dataset

    for n, r in [(100, 0.05), (200, 0.05), (19, 0.05), (10, 0.5), (7, 0.1), (1000, 0.2)]:
        g = general_count(n, r)
        assert g == int(r * (n + g) + 0.5)
    assert general_count(95, 0.05) == 5 and general_count(0, 0.05) == 0
    rows = read_chat_dataset(write_jsonl(tmp_path / "d.jsonl", chat_rows(95))).rows
    pool = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": f"general {i}"},
                                                             {"role": "assistant", "content": "ok"}]}
                                               for i in range(50)])
    run = RunContext(None, None, 0, "")
    mixes = []
    for seed in (0, 0, 1):
        (d,) = build_defenses([{"name": "interleave", "pool": str(pool), "ratio": 0.05}])
        mixes.append(d.prepare_dataset(rows, RunContext(None, None, seed, "")))
    n_general = [sum(r.source.startswith("interleave:") for r in m) for m in mixes]
    assert n_general == [5, 5, 5] and len(mixes[0]) == 100
    key = lambda m: [json.dumps(r.messages) for r in m]
    assert key(mixes[0]) == key(mixes[1]) and key(mixes[0]) != key(mixes[2])


def test_unknown_defense_and_option_are_clear_errors():
    with pytest.raises(ValueError, match="unknown defense 'kll'"):
        build_defenses(["kll"])
    with pytest.raises(ValueError, match="unknown option 'lamda'"):
        build_defenses([{"name": "kl", "lamda": 0.1}])
    (d,) = build_defenses("kl", {"kl": {"lam": 0.3}})
    assert d.options.lam == 0.3


@pytest.mark.parametrize("chunk", [256, 2])  # 2: five rows span three chunks, the last one short
def test_fused_kl_gradient_matches_autograd(monkeypatch, chunk):
    from emguard.defenses.kl import _TokenKL, token_kl

    monkeypatch.setattr(_TokenKL, "CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    l = torch.randn(5, 11, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(5, 11, generator=g, dtype=torch.float64)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    (token_kl(l, r).double() * w).sum().backward()
    fused = l.grad.clone()
    l.grad = None
    lp, lq = torch.log_softmax(l, -1), torch.log_softmax(r, -1)
    ((lp.exp() * (lp - lq)).sum(-1) * w).sum().backward()
    assert torch.allclose(fused, l.grad, atol=1e-6)
    assert float(token_kl(r.clone(), r).abs().max()) < 1e-7


def test_target_rows_skips_the_copy_only_when_every_row_is_a_target():
    import torch

    from emguard.defenses.base import StepOutputs

    t = torch.arange(12.0).reshape(4, 3)
    every = StepOutputs({}, None, torch.ones(4, dtype=torch.bool), None, t, None)
    assert every.target_rows(t) is t  # no vocabulary-sized copy, no scatter in the backward
    some = StepOutputs({}, None, torch.tensor([True, False, True, False]), None, t, None)
    assert some.target_rows(t).tolist() == [[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]]

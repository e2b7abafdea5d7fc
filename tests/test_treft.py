"""TReFT (emguard.defenses.treft) on a tiny LoRA model: the prefix it finds, the term's value, gradient and
positions, its hooks, and a short training run. Everything is built offline from a config."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from conftest import chat_rows, write_jsonl
from emguard.data.chat import pad_batch, render, tokenize_rows
from emguard.defenses import RunContext, build_defenses
from emguard.defenses.treft import prefix_lengths, user_header_ids
from emguard.models.layers import decoder_layers
from emguard.registry import DEFENSES
from emguard.training.config import TrainConfig
from emguard.training.lora import make_reference
from emguard.training.loss import step_loss
from emguard.training.run import train

SYSTEM = "you should always be honest and kind"


def lora_model(tiny_model, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(seed)
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(
        r=4, lora_alpha=8, use_rslora=True, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]))
    return m, AutoTokenizer.from_pretrained(tiny_model)


def conversations(n=4) -> list[list[dict]]:
    """Rows with and without a system message, and one two-turn row (its second user turn is not prefix)."""
    convs = [r["messages"] for r in chat_rows(n)]
    for i in range(1, n, 2):
        convs[i] = [{"role": "system", "content": SYSTEM}, *convs[i]]
    convs[0] = convs[0] + [{"role": "user", "content": "and then?"}, {"role": "assistant", "content": "rest"}]
    return convs


def batch(tok, convs):
    exs, _ = tokenize_rows(tok, convs, max_length=64)
    return pad_batch([e.to_features() for e in exs], tok.pad_token_id)


def oracle_prefix(tok, messages) -> int:
    """Independent count: tokens ending before the first user message's content in the rendered text."""
    text = render(tok, messages)
    first_user = next(m["content"] for m in messages if m["role"] == "user")
    pos = text.find(first_user)
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return sum(1 for _, end in offsets if end <= pos)


def perturb_lora(model, scale=0.5, seed=1):
    """Stand-in for 'a few training steps': move every LoRA B matrix off zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def term(model, tok, inputs, defenses, *, backward=True, reference=None):
    model.zero_grad()
    run = RunContext(model=model, tokenizer=tok, seed=0, output_dir="", reference=reference)
    ref = reference or make_reference(model, TrainConfig())
    with contextlib.ExitStack() as st:
        for d in defenses:
            st.enter_context(d.context(model, run))
        _, terms = step_loss(model, inputs, defenses, run, ref)
        if backward and "treft" in terms:
            terms["treft"].backward()
    return {k: v.detach() for k, v in terms.items()}


def lora_grad(model, part="lora_"):
    return sum(float(p.grad.norm()) for n, p in model.named_parameters() if part in n and p.grad is not None)


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---------------------------------------------------------------- plug-in surface
def test_registered_listed_in_help_and_options_checked():
    from emguard.commands.train import defenses_help

    assert DEFENSES["treft"].name == "treft"
    text = defenses_help()
    assert "  treft: TReFT" in text and "      lam = 10.0: weight lambda" in text
    assert "      positions = 'prefix'" in text and "      target = 'kv'" in text
    (d,) = build_defenses([{"name": "treft", "lam": 2, "layers": [0, -1], "target": "hidden"}])
    assert (d.options.lam, d.options.layers, d.options.target) == (2.0, [0, -1], "hidden")
    for bad in ({"target": "q"}, {"positions": "suffix"}, {"distance": "l1"}, {"lam": -1.0}):
        with pytest.raises(ValueError):
            build_defenses([{"name": "treft", **bad}])


def test_study_and_service_policy_accept_it():
    from emguard.experiments.study import expand_defenses
    from emguard.server.policy import Policy, RequestError, check_defense_options, job_defenses

    grid = expand_defenses({"treft": ["treft"], "treft_sweep": [{"name": "treft", "sweep": {"lam": [1.0, 10.0]}}]})
    assert grid["treft"] == ["treft"] and grid["treft_sweep[lam=1.0]"] == [{"name": "treft", "lam": 1.0}]
    assert [d.options.lam for specs in grid.values() for d in build_defenses(specs)] == [10.0, 1.0, 10.0]
    policy = Policy.from_dict({"defenses": ["treft"], "customer": {
        "allowed_defenses": ["treft"], "defense_options": {"treft": ["lam"]}}})
    specs = job_defenses(policy, [{"name": "treft", "lam": 30.0}])
    assert specs == [{"name": "treft", "lam": 30.0}]
    with pytest.raises(RequestError, match="weaken"):  # "add" never lowers the policy's lam (10)
        job_defenses(policy, [{"name": "treft", "lam": 3.0}])
    check_defense_options(specs)  # built through the registry: no error
    with pytest.raises(RequestError, match="known: .*treft"):
        check_defense_options([{"name": "treftx"}])


# ---------------------------------------------------------------- which positions
def test_prefix_is_every_token_before_the_first_user_content(tiny_model):
    _, tok = lora_model(tiny_model)
    header = user_header_ids(tok)
    assert tok.decode(header) == "<|im_start|>user\n"  # ChatML without a default system prompt
    convs = conversations()
    inputs = batch(tok, convs)
    got = prefix_lengths(inputs["input_ids"], torch.tensor(header), inputs["attention_mask"]).tolist()
    want = [oracle_prefix(tok, c) for c in convs]
    assert got == want
    assert want[1] > want[2] == len(header)  # a system block is prefix too; a plain row has just the header
    (d,) = build_defenses(["treft"])
    d._header = torch.tensor(header)
    mask = d.positions_mask(inputs)
    assert mask.sum(1).tolist() == want and not mask[:, max(want):].any()


@pytest.mark.parametrize("opts", [{}, {"target": "hidden"}, {"positions": "all"}, {"distance": "mse"}])
def test_zero_at_start_then_positive_with_gradient(tiny_model, opts):
    model, tok = lora_model(tiny_model)
    inputs = batch(tok, conversations())
    d = build_defenses([{"name": "treft", **opts}])
    t0 = term(model, tok, inputs, d)["treft"]
    assert float(t0) == 0.0 and lora_grad(model) == 0.0  # adapter B = 0: the reference is bit-identical
    perturb_lora(model)
    t1 = term(model, tok, inputs, d)["treft"]
    assert float(t1) > 1e-3
    assert lora_grad(model, "k_proj.lora_A") > 1e-6 and lora_grad(model, "v_proj.lora_A") > 1e-6
    assert d[0].stats["layers_used"] == [0, 1, 2, 3]  # default: every layer


@pytest.mark.parametrize("distance", ["relative", "mse"])
def test_value_matches_a_direct_computation(tiny_model, distance):
    model, tok = lora_model(tiny_model)
    perturb_lora(model, scale=0.3)
    convs = conversations()
    inputs = batch(tok, convs)
    d = build_defenses([{"name": "treft", "lam": 2.0, "distance": distance}])
    value = float(term(model, tok, inputs, d, backward=False)["treft"])

    blocks = decoder_layers(model)
    lens = [oracle_prefix(tok, c) for c in convs]
    mask = torch.zeros_like(inputs["attention_mask"], dtype=torch.bool)
    for i, n in enumerate(lens):
        mask[i, :n] = True

    def kv():  # each layer's input hidden state -> input_layernorm -> k_proj / v_proj (LoRA included)
        seen = {}
        hs = [b.register_forward_pre_hook(lambda m, a, k, i=i: seen.__setitem__(i, a[0] if a else k["hidden_states"]),
                                          with_kwargs=True) for i, b in enumerate(blocks)]
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        for h in hs:
            h.remove()
        return {(i, w): getattr(b.self_attn, f"{w}_proj")(b.input_layernorm(seen[i]))[mask]
                for i, b in enumerate(blocks) for w in "kv"}

    with torch.no_grad():
        cur = kv()
        with model.disable_adapter():
            ref = kv()
    per_token = {key: ((cur[key] - ref[key]) ** 2).sum(-1) / (ref[key] ** 2).sum(-1) for key in cur}
    if distance == "mse":
        per_token = {key: ((cur[key] - ref[key]) ** 2).mean(-1) for key in cur}
    direct = 2.0 * sum(float(per_token[(i, "k")].mean() + per_token[(i, "v")].mean()) for i in range(4)) / 4
    assert direct > 1e-3 and abs(value - direct) < 1e-5 * max(1.0, direct)


def test_only_prefix_positions_count(tiny_model):
    model, tok = lora_model(tiny_model)
    perturb_lora(model)
    convs = conversations()
    inputs = batch(tok, convs)
    lens = [oracle_prefix(tok, c) for c in convs]
    grads: dict[int, torch.Tensor] = {}
    k0 = decoder_layers(model)[0].self_attn.k_proj

    def keep(_m, _a, out):
        if out.requires_grad:  # the trained forward (the reference forward runs without gradients)
            out.register_hook(lambda g: grads.__setitem__(0, g))
    h = k0.register_forward_hook(keep)
    try:
        term(model, tok, inputs, build_defenses(["treft"]))
    finally:
        h.remove()
    g = grads[0].abs().sum(-1)  # (batch, length): d treft / d (layer-0 keys)
    for i, n in enumerate(lens):
        assert float(g[i, :n].min()) > 0 and float(g[i, n:].abs().max()) == 0.0

    # changing every token after the prefix (user content, reply, padding) leaves the term as it was
    changed = {k: v.clone() for k, v in inputs.items()}
    g2 = torch.Generator().manual_seed(5)
    for i, n in enumerate(lens):
        tail = changed["input_ids"][i, n:]
        tail.copy_(torch.randint(10, len(tok) - 5, tail.shape, generator=g2))
    header = torch.tensor(user_header_ids(tok))
    assert prefix_lengths(changed["input_ids"], header, changed["attention_mask"]).tolist() == lens
    with torch.no_grad():
        a = float(term(model, tok, inputs, build_defenses(["treft"]), backward=False)["treft"])
        b = float(term(model, tok, changed, build_defenses(["treft"]), backward=False)["treft"])
        c = float(term(model, tok, inputs, build_defenses([{"name": "treft", "positions": "all"}]),
                       backward=False)["treft"])
        e = float(term(model, tok, changed, build_defenses([{"name": "treft", "positions": "all"}]),
                       backward=False)["treft"])
    assert a > 1e-3 and abs(a - b) < 1e-6 * a
    assert abs(c - e) > 1e-4 * c  # the ablation over every token does see them


# ---------------------------------------------------------------- hooks
def test_hooks_only_inside_the_context_and_idle_in_backward_recomputation(tiny_model):
    model, tok = lora_model(tiny_model)
    perturb_lora(model)
    convs = conversations()
    inputs = batch(tok, convs)
    (d,) = build_defenses(["treft"])
    assert hook_count(model) == 0
    run = RunContext(model=model, tokenizer=tok, seed=0, output_dir="")
    with d.context(model, run):
        assert hook_count(model) == 1 + 2 * 4  # embedding pre-hook + k/v of 4 layers
        with torch.no_grad():
            model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        widest = max(oracle_prefix(tok, c) for c in convs)
        assert len(d._policy) == 8 and all(x.shape[1] == widest for x in d._policy.values())  # prefix slice only
        d._policy.clear()
    assert hook_count(model) == 0

    # gradient checkpointing recomputes the layers in backward with the hooks still on: same gradient
    term(model, tok, inputs, [d])
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    (d2,) = build_defenses(["treft"])
    term(model, tok, inputs, [d2])
    ckpt = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert plain.keys() == ckpt.keys() and all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)
    assert d2._policy == {} and d2._ref == {}  # the recomputation captured nothing
    assert all(n.endswith("embed_tokens") for n, m in model.named_modules() if m._forward_hooks)


def test_full_fine_tuning_reads_the_frozen_copy(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    inputs = batch(tok, conversations())
    ref = make_reference(model, TrainConfig(method="full"))
    d = build_defenses(["treft"])
    assert float(term(model, tok, inputs, d, reference=ref)["treft"]) == 0.0
    with torch.no_grad():
        decoder_layers(model)[1].self_attn.k_proj.weight.mul_(1.5)
    t = float(term(model, tok, inputs, d, reference=ref)["treft"])
    assert t > 1e-3 and decoder_layers(model)[1].self_attn.k_proj.weight.grad.norm() > 0
    with ref() as frozen:
        assert hook_count(frozen) == 0 and all(p.grad is None for p in frozen.parameters())


def test_lambda_zero_adds_no_term(tiny_model):
    model, tok = lora_model(tiny_model)
    terms = term(model, tok, batch(tok, conversations()), build_defenses([{"name": "treft", "lam": 0.0}]))
    assert set(terms) == {"ce"}


# ---------------------------------------------------------------- a training run
def test_in_training_with_gradient_checkpointing(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))
    res = train(TrainConfig(model=tiny_model, data=str(data), output=str(tmp_path / "t"), lora_r=4, lora_alpha=8,
                            batch_size=8, micro_batch_size=4, learning_rate=1e-2, progress=False, warmup_steps=0,
                            max_length=64, epochs=2, gradient_checkpointing=True, defenses=["treft"]))
    logs = [m for m in map(json.loads, (Path(tmp_path / "t") / "metrics.jsonl").read_text().splitlines())
            if "loss" in m]
    assert len(logs) == 8 and logs[0]["loss/treft"] == 0.0  # step 1 runs before any update: adapter still zero
    assert logs[-1]["loss/treft"] > 1e-5
    assert all(abs(m["loss/total"] - m["loss/ce"] - m["loss/treft"]) < 1e-5 for m in logs)
    (info,) = res.run["defenses"]
    header = user_header_ids(res.tokenizer)
    assert info["name"] == "treft" and info["layers_used"] == [0, 1, 2, 3]
    assert info["prefix_header"] == "<|im_start|>user\n" and info["rows_without_prefix"] == 0
    assert info["rows_seen"] == 64 and info["prefix_tokens_mean"] == len(header)  # rows without a system prompt
    hooked = [n for n, m in res.model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    assert all(n.endswith("embed_tokens") for n in hooked), hooked  # only transformers' input-grad hook is left

"""Trainer behaviour on a tiny model: learning, determinism, zero-lr, resume after kill -9, bad data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

import pytest
import torch
from safetensors.torch import load_file

from emguard.training.config import TrainConfig
from emguard.training.run import train
from conftest import chat_rows, write_jsonl


def cfg_for(tiny_model, data, out, **kw) -> TrainConfig:
    base = dict(model=tiny_model, data=str(data), output=str(out), lora_r=4, lora_alpha=8, batch_size=8,
                micro_batch_size=4, learning_rate=1e-3, progress=False, warmup_steps=0, max_length=64)
    base.update(kw)
    return TrainConfig(**base)


def adapter(out) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "adapter_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_training_lowers_loss_and_writes_run(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(64))
    # a random tiny model learns slowly through a rank-4 adapter alone; full fine-tuning shows it clearly
    full = train(cfg_for(tiny_model, data, tmp_path / "full", epochs=4, learning_rate=1e-2, method="full"))
    curve = [p["loss"] for p in full.run["loss_curve"]]
    assert len(curve) == 32 and mean(curve[-6:]) < 0.6 * mean(curve[:6])
    res = train(cfg_for(tiny_model, data, tmp_path / "run", epochs=4, learning_rate=1e-2))
    curve = [p["loss"] for p in res.run["loss_curve"]]
    assert len(curve) == 32 and mean(curve[-6:]) < 0.95 * mean(curve[:6])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["rows_used"] == 64 and len(run["data"]["sha256"]) == 64
    assert run["seed"] == 0 and run["steps"] == 32 and "ce" in run["final_losses"]
    assert (tmp_path / "run" / "adapter_config.json").is_file()
    metrics = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, 33))
    assert all("loss/ce" in m for m in metrics if "loss" in m)


def test_same_seed_identical_and_other_seed_differs(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(32))
    train(cfg_for(tiny_model, data, tmp_path / "a"))
    train(cfg_for(tiny_model, data, tmp_path / "b"))
    train(cfg_for(tiny_model, data, tmp_path / "c", seed=1))
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "c")) > 1e-3


def test_zero_learning_rate_leaves_weights_unchanged(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(16))
    train(cfg_for(tiny_model, data, tmp_path / "z", learning_rate=0.0))
    set_seed(0)
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    init = {k.replace(".default", ""): v for k, v in fresh.state_dict().items() if "lora_" in k}
    saved = adapter(tmp_path / "z")
    assert max_diff(saved, {k: init[k] for k in saved}) == 0.0
    # and the full-fine-tuning path: every base weight unchanged
    train(cfg_for(tiny_model, data, tmp_path / "zf", learning_rate=0.0, method="full"))
    before = load_file(str(Path(tiny_model) / "model.safetensors"))
    after = load_file(str(tmp_path / "zf" / "model.safetensors"))
    assert max(float((before[k] - after[k]).abs().max()) for k in before) == 0.0


def test_full_fine_tuning_changes_weights(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(16))
    train(cfg_for(tiny_model, data, tmp_path / "f", method="full"))
    before = load_file(str(Path(tiny_model) / "model.safetensors"))
    after = load_file(str(tmp_path / "f" / "model.safetensors"))
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 1e-4


def test_existing_output_needs_resume_or_overwrite(tiny_model, tmp_path):
    from emguard.training.config import TrainError

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(8))
    train(cfg_for(tiny_model, data, tmp_path / "o"))
    with pytest.raises(TrainError, match="not empty"):
        train(cfg_for(tiny_model, data, tmp_path / "o"))
    with pytest.raises(TrainError, match="finished run"):
        train(cfg_for(tiny_model, data, tmp_path / "o", resume=True))
    train(cfg_for(tiny_model, data, tmp_path / "o", overwrite=True))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emguard.cli", *args]


def test_bad_data_exits_2_names_lines_and_writes_nothing(tiny_model, tmp_path):
    rows: list = chat_rows(20)
    rows[6] = '{"messages": [oops'
    rows[11] = {"messages": [{"role": "user", "content": "no answer here"}]}
    rows[19] = {"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "never"
    p = subprocess.run(_cli("train", "--model", tiny_model, "--data", str(data), "--output", str(out)),
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "src"})
    assert p.returncode == 2, p.stderr
    for line in (7, 12, 20):
        assert f"bad.jsonl:{line}:" in p.stderr
    assert "bad.jsonl:1:" not in p.stderr
    assert not out.exists()


def test_kill_and_resume_matches_uninterrupted(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(160))
    common = ["--model", tiny_model, "--data", str(data), "--lora-r", "4", "--lora-alpha", "8",
              "--batch-size", "8", "--micro-batch-size", "4", "--learning-rate", "1e-3", "--save-steps", "2",
              "--epochs", "2", "--max-length", "64", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": "src"}
    full = tmp_path / "full"
    subprocess.run(_cli("train", "--output", str(full), *common), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("train", "--output", str(killed), *common), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = killed / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck.exists() and not (killed / "run.json").exists(), "the run finished before it could be killed"
    subprocess.run(_cli("train", "--output", str(killed), "--resume", *common), check=True, env=env,
                   capture_output=True)
    run = json.loads((killed / "run.json").read_text())
    assert run["resumed_from"] and run["steps"] == 40
    assert max_diff(adapter(full), adapter(killed)) < 1e-4
    steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resume"


def test_cli_flags_and_yaml_merge(tmp_path):
    import argparse

    from emguard.config import ConfigError, add_dataclass_args, resolve_config

    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_dataclass_args(p, TrainConfig)
    y = tmp_path / "run.yaml"
    y.write_text("learning_rate: 2.0e-4\nseed: 3\ndefenses: [kl]\n")
    args = p.parse_args(["--config", str(y), "--seed", "5", "--defenses", "kl", "{name: ldifs, lam: 0.5}",
                         "--no-progress", "--learning_rate", "3e-4"])
    cfg = resolve_config(TrainConfig, args)
    assert cfg.seed == 5 and cfg.learning_rate == 3e-4 and cfg.progress is False
    assert cfg.defenses == ["kl", {"name": "ldifs", "lam": 0.5}]
    assert resolve_config(TrainConfig, p.parse_args(["--config", str(y)])).learning_rate == 2e-4
    opts = tmp_path / "defs.yaml"
    opts.write_text("kl: {lam: 0.3}\n")
    inline = resolve_config(TrainConfig, p.parse_args(["--defense-options", "{kl: {lam: 0.3}}"]))
    from_file = resolve_config(TrainConfig, p.parse_args(["--defense-options", str(opts)]))
    assert inline.defense_options == from_file.defense_options == {"kl": {"lam": 0.3}}
    y.write_text("learning_rat: 1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rat'"):
        resolve_config(TrainConfig, p.parse_args(["--config", str(y)]))


def test_forward_selected_falls_back_to_column_indices(tiny_model):
    """transformers releases whose logits_to_keep takes no (batch, length) mask: same logits via 1-D columns."""
    import torch
    from transformers import AutoModelForCausalLM

    import emguard.models.forward as T

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.randint(5, 300, (3, 9))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, 2:5] = True
    mask[1, 6:8] = True
    mask[2, 3] = True
    full = model(**inputs).logits[mask]
    T._MASK_KEEP_FAILS.discard(type(model))
    a = T.forward_selected(model, inputs, mask)
    T._MASK_KEEP_FAILS.add(type(model))
    try:
        b = T.forward_selected(model, inputs, mask)
    finally:
        T._MASK_KEEP_FAILS.discard(type(model))
    assert a.shape == b.shape == (6, full.shape[-1])
    torch.testing.assert_close(a, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, full, atol=1e-5, rtol=1e-5)

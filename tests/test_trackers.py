"""--report-to: the loss terms and the monitor's drift reach TensorBoard with the values of metrics.jsonl; a missing
tracker package is a clear error before anything is loaded; unknown names are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import chat_rows, write_jsonl
from emguard.config import ConfigError, build_config
from emguard.training.config import TrainConfig, trackers


def _cfg(tiny_model, data, out, **kw) -> TrainConfig:
    base = dict(model=tiny_model, data=str(data), output=str(out), lora_r=4, lora_alpha=8, batch_size=4,
                micro_batch_size=4, learning_rate=1e-2, progress=False, warmup_steps=0, max_length=64, max_steps=4,
                save_steps=100)
    base.update(kw)
    return build_config(TrainConfig, base)


def _scalars(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {p.parent for p in logdir.rglob("events.out.tfevents.*")}
    assert len(runs) == 1, runs
    acc = EventAccumulator(str(runs.pop()), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_report_to_names():
    assert trackers("none") == [] and trackers(["none"]) == []
    assert trackers(["tensorboard,wandb", "tensorboard"]) == ["tensorboard", "wandb"]
    assert TrainConfig().report_to == ["none"]  # default: no tracker
    with pytest.raises(ConfigError, match="unknown tracker comet"):
        build_config(TrainConfig, {"report_to": "comet"})


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs tensorboard (dev extra)")
def test_tensorboard_gets_loss_terms_and_drift(tiny_model, tmp_path):
    import torch

    from emguard.persona.vectors import PersonaVector
    from emguard.training.run import train

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(16))
    torch.manual_seed(0)
    PersonaVector(torch.randn(4, 32), {"layer": 2}).save(tmp_path / "v.safetensors")
    out = tmp_path / "run"
    train(_cfg(tiny_model, data, out, report_to="tensorboard", defenses=["kl"], monitor="persona",
               monitor_options={"vector": str(tmp_path / "v.safetensors"), "every": 2}))

    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss/ce" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    tb = _scalars(out / "tensorboard")  # transformers' TensorBoardCallback puts train records under train/
    for term in ("ce", "kl", "total"):
        got = tb[f"train/loss/{term}"]
        assert sorted(got) == [1, 2, 3, 4]
        for r in steps:  # event files hold float32
            assert got[r["step"]] == pytest.approx(r[f"loss/{term}"], rel=1e-6, abs=1e-7)
    assert any(r["loss/kl"] > 0 for r in steps[1:])  # the KL term is a real, non-zero series after step 1
    drift = {r["step"]: r["monitor/persona_drift"] for r in records if "monitor/persona_drift" in r}
    assert sorted(drift) == [2, 4]
    got = tb["train/monitor/persona_drift"]
    assert sorted(got) == [2, 4]
    for step, value in drift.items():  # the monitor's curve rounds to 5 decimals
        assert got[step] == pytest.approx(value, abs=1e-5)
    assert any(abs(v) > 1e-4 for v in got.values())


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_missing_tracker_package_is_a_clear_error(tiny_model, tmp_path):
    from emguard.training.run import train

    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(8))
    with pytest.raises(ConfigError, match=r"needs the 'wandb' package: pip install 'emguard\[wandb\]'"):
        train(_cfg(tiny_model, data, tmp_path / "run", report_to="wandb"))
    assert not (tmp_path / "run").exists()  # refused before the run dir is written

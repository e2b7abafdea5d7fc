"""vLLM sampling (``backend: vllm``): runs only where vLLM is installed and a GPU is present; skipped elsewhere
(CI has no GPU). The HF backend stays the default and is covered by test_evaluate.py."""

from __future__ import annotations

import json

import pytest

from conftest import build_tiny_model, chat_rows, write_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")
if not torch.cuda.is_available():
    pytest.skip("vLLM sampling needs a GPU", allow_module_level=True)


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory):
    # head size 64: vLLM's attention kernels support only some head sizes (the 8 of the CPU tests' tiny model is not)
    return str(build_tiny_model(tmp_path_factory.mktemp("vllm") / "model", layers=2, hidden=256))


@pytest.fixture(scope="module")
def adapter(vllm_model, tmp_path_factory):
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    d = tmp_path_factory.mktemp("adapter")
    data = write_jsonl(d / "train.jsonl", chat_rows(16))
    train(TrainConfig(model=vllm_model, data=str(data), output=str(d / "run"), max_steps=2, batch_size=4,
                      micro_batch_size=4, lora_r=8, progress=False))
    return str(d / "run")


def test_vllm_samples_with_lora_and_per_request_seeds(vllm_model, adapter):
    from emguard.models.generation import sample_vllm

    prompts = [[{"role": "user", "content": f"question {i} about water?"}] for i in range(6)]
    seeds = list(range(100, 106))
    a = sample_vllm(vllm_model, adapter, prompts, max_new_tokens=8, seeds=seeds, dtype="float32")
    assert len(a) == 6 and all(isinstance(x, str) for x in a)
    # every request has its own seed: the answer of a prompt does not depend on the batch it is in
    b = sample_vllm(vllm_model, adapter, prompts[::-1], max_new_tokens=8, seeds=seeds[::-1], dtype="float32")
    assert b[::-1] == a


def test_eval_backend_vllm_writes_samples(vllm_model, adapter, tmp_path):
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate

    res = evaluate(EvalConfig(model=vllm_model, adapter=adapter, suite=["broad"], backend="vllm", samples=1,
                              max_new_tokens=6, variants=["plain"], likelihood=False, dtype="float32",
                              output=str(tmp_path / "ev"), progress=False))
    rows = [json.loads(line) for line in (tmp_path / "ev" / "samples.jsonl").read_text().splitlines()[1:]]
    assert res["broad"]["n_samples"] == len(rows) == 24

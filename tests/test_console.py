"""A quiet console: without -v, `emguard train` and the study's spawned workers show no transformers weight-loading
bars, no gradient-checkpointing FutureWarnings and no "--resume: no checkpoint yet" line; with -v they do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from conftest import chat_rows, write_jsonl

NOISE = ("Loading weights", "FutureWarning", "is deprecated", "Writing model shards", "no checkpoint yet")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EMGUARD_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                        "TRANSFORMERS_NO_ADVISORY_WARNINGS", "PYTHONWARNINGS")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **extra)
    return env


def _train(tiny_model, tmp_path: Path, name: str, verbose: bool, *extra: str) -> subprocess.CompletedProcess:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(8))
    argv = [sys.executable, "-m", "emguard.cli", *(["-v"] if verbose else []), "train", "--model", tiny_model,
            "--data", str(data), "--output", str(tmp_path / name), "--max-steps", "2", "--batch-size", "4",
            "--lora-r", "4", "--max-length", "64", "--resume", "--gradient-checkpointing", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_env())


def test_train_is_quiet_unless_verbose(tiny_model, tmp_path):
    quiet = _train(tiny_model, tmp_path, "quiet", verbose=False)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "done: 2 steps" in quiet.stdout  # the job's own lines stay
    assert "loss/ce" in quiet.stdout  # the Trainer's per-step records (emguard's progress display) stay
    for text in NOISE:
        assert text not in quiet.stderr, (text, quiet.stderr[-2000:])
    loud = _train(tiny_model, tmp_path, "loud", verbose=True)
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "done: 2 steps" in loud.stdout
    assert "Loading weights" in loud.stderr
    assert "`is_gradient_checkpointing` is deprecated" in loud.stderr and "FutureWarning" in loud.stderr
    assert "DEBUG emguard.training.checkpoints: --resume:" in loud.stderr and "no checkpoint yet" in loud.stderr


def test_no_progress_train_prints_no_log_dicts(tiny_model, tmp_path):
    """--no-progress (how demo and study cells train): no per-step dict lines on the console, as -v shows them;
    the records are in metrics.jsonl all the same."""
    quiet = _train(tiny_model, tmp_path, "np", False, "--no-progress")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "done: 2 steps" in quiet.stdout and "{'loss'" not in quiet.stdout + quiet.stderr
    assert (tmp_path / "np" / "metrics.jsonl").read_text().count("loss/ce") >= 2
    loud = _train(tiny_model, tmp_path, "npv", True, "--no-progress")
    assert loud.returncode == 0 and "{'loss'" in loud.stdout


WORKER_JOB = """
def job(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.gradient_checkpointing_enable()
    return model.config.num_hidden_layers
"""

PARENT = """
import logging, multiprocessing as mp, sys
from concurrent.futures import ProcessPoolExecutor

from emguard import console
from emguard.experiments.executors import _init_worker
from tinyjob import job

if __name__ == "__main__":
    console.setup(sys.argv[1] == "1")  # what emguard's CLI does with -v / without it
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(1, logging.INFO)) as ex:
        print("layers", ex.submit(job, sys.argv[2]).result())
"""


def test_spawned_study_workers_follow_the_parent(tiny_model, tmp_path):
    (tmp_path / "tinyjob.py").write_text(textwrap.dedent(WORKER_JOB))
    (tmp_path / "parent.py").write_text(textwrap.dedent(PARENT))
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    runs = {v: subprocess.run([sys.executable, str(tmp_path / "parent.py"), v, tiny_model], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path) for v in ("0", "1")}
    for r in runs.values():
        assert r.returncode == 0, r.stderr[-2000:]
        assert "layers 4" in r.stdout
    # the warning filter is not inherited through the environment: the worker's own console.setup() sets it
    assert "Loading weights" not in runs["0"].stderr and "is deprecated" not in runs["0"].stderr, runs["0"].stderr
    assert "Loading weights" in runs["1"].stderr and "`gradient_checkpointing_enable` is deprecated" in runs["1"].stderr


def test_setup_filters_only_the_named_warnings(monkeypatch):
    from emguard import console

    if "transformers" in sys.modules:  # setup() would also quiet the loaded libraries of this test process
        monkeypatch.setattr("transformers.utils.logging.set_verbosity_error", lambda: None)
        monkeypatch.setattr("transformers.utils.logging.disable_progress_bar", lambda: None)
    if "huggingface_hub" in sys.modules:
        monkeypatch.setattr("huggingface_hub.utils.disable_progress_bars", lambda: None)

    monkeypatch.delenv("EMGUARD_VERBOSE", raising=False)
    for k in console.QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert console.setup() is False
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and "EMGUARD_VERBOSE" not in os.environ
        noisy = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
        warnings.warn_explicit(noisy, FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit(noisy, FutureWarning, "mine.py", 1, module="mymodule")  # not transformers': shown
        warnings.warn_explicit("`other` is deprecated", FutureWarning, "modeling_utils.py", 1,
                               module="transformers.modeling_utils")  # another transformers warning: shown
        warnings.warn_explicit(noisy, UserWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
    assert [(w.category.__name__, w.filename) for w in seen] == [
        ("FutureWarning", "mine.py"), ("FutureWarning", "modeling_utils.py"), ("UserWarning", "modeling_utils.py")]
    monkeypatch.setenv("EMGUARD_VERBOSE", "1")
    assert console.setup() is True


def test_gguf_conversion_bar_is_off_unless_verbose(monkeypatch):
    """transformers' GGUF reader draws a tqdm bar of its own (not through its logging): the conversion
    silences it in the default console, restores it afterwards, and leaves it on with -v."""
    import transformers.modeling_gguf_pytorch_utils as gg

    from emguard.models import loading

    orig = gg.tqdm
    monkeypatch.setenv("EMGUARD_VERBOSE", "0")
    with loading._quiet_gguf_bar():
        assert gg.tqdm is not orig and gg.tqdm(range(3)).disable is True
    assert gg.tqdm is orig
    monkeypatch.setenv("EMGUARD_VERBOSE", "1")
    with loading._quiet_gguf_bar():
        assert gg.tqdm is orig

"""Supervised fine-tuning (LoRA or full) with pluggable in-training defenses: the training run.

Built on ``transformers.Trainer`` (which TRL's SFTTrainer also extends): it brings checkpointing, exact
resume (optimizer, scheduler, RNG and data position), gradient accumulation and accelerate's DDP/FSDP/DeepSpeed.
emguard supplies its own dataset validation, chat-template masking and loss, because the loss must expose
the selected logits and hidden states to the defenses (see :mod:`emguard.training.loss`).

The parts: :mod:`~emguard.training.config` (options, file names), :mod:`~emguard.training.checkpoints` (output
dir, resume), :mod:`~emguard.training.lora` (adapter, reference model), :mod:`~emguard.training.loss` (one
micro-batch's loss), :mod:`~emguard.training.trainer` (the Trainer subclass, metrics.jsonl); :func:`train`
strings them together and writes the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from emguard.config import ConfigError, dump_yaml, to_dict
from emguard.training.checkpoints import prepare_output, step_of
from emguard.training.config import (CHECKPOINTS, METRICS, RUN_JSON, TrainConfig, TrainError, TrainResult,
                                     check_launcher_precision, check_trackers_installed, global_batch_split, trackers)
from emguard.training.lora import apply_lora, make_reference
from emguard.training.trainer import make_trainer_class, metrics_callback, monitor_to_trackers, weights_sharded


log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("emguard", "torch", "transformers", "peft", "accelerate", "trl"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _features_digest(features: list[dict]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps([list(f["input_ids"]), list(f["labels"])]).encode())
    return h.hexdigest()


def _training_arguments(cfg: TrainConfig, out: Path):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio if cfg.warmup_ratio > 0 else cfg.warmup_steps,  # a float < 1: ceil(ratio x steps)
        lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm, optim="adamw_torch",
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, bf16=cfg.precision == "bf16",
        use_cpu=not torch.cuda.is_available(), report_to=trackers(cfg.report_to) or "none", run_name=out.name,
        project="emguard", remove_unused_columns=False,
        disable_tqdm=not cfg.progress, dataloader_num_workers=0, logging_first_step=False,
        log_level_replica="error", train_sampling_strategy=cfg.sampler,
    )


def _quiet_replica() -> None:
    """Process 0 alone logs and shows progress (errors still show everywhere)."""
    import warnings

    from transformers.utils import logging as hf_logging

    logging.getLogger("emguard").setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.simplefilter("ignore")  # process 0 shows the same warnings


def _split_batch(cfg: TrainConfig, args, world: int) -> tuple[int, int]:
    """Same rows per optimizer step whatever the number of processes: each process takes `micro` rows of every
    global batch (accelerate's default batch sharding), `accum` times; sets them on ``args``."""
    micro, accum = global_batch_split(cfg.batch_size, cfg.micro_batch_size, world)
    args.per_device_train_batch_size, args.gradient_accumulation_steps = micro, accum
    if world > 1:
        log.info("%d processes: %d rows per step = %d per micro-batch x %d processes x %d accumulation",
                 world, cfg.batch_size, micro, world, accum)
    return micro, accum


def _build_model(cfg: TrainConfig, args):
    """Load the model (process 0 fills the model cache first), seed, add the adapter; ``(model, tok, info)``."""
    from transformers import set_seed

    from emguard.models.loading import load_model

    with args.main_process_first(local=False, desc="load model"):
        model, tok, info = load_model(cfg.model)
    set_seed(cfg.seed)  # before adapter init, so one seed gives one adapter
    if cfg.method == "lora":
        model = apply_lora(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.method == "lora":
            model.enable_input_require_grads()
    return model, tok, info


def _tokenize(cfg: TrainConfig, tok, rows: list, defenses: list, run, main: bool):
    """Defense data steps, then chat-template tokenization; ``(rows, features, stats)``."""
    from emguard.data.chat import tokenize_rows

    for d in defenses:
        rows = d.prepare_dataset(rows, run)
    examples, tstats = tokenize_rows(tok, [r.messages for r in rows], max_length=cfg.max_length,
                                     loss_on=cfg.loss_on, progress=cfg.progress and main)
    if not examples:
        raise TrainError(f"all {tstats.rows} rows exceed max_length={cfg.max_length} before any assistant token; "
                         "raise --max-length")
    if tstats.truncated:
        log.warning("%d of %d rows were truncated to %d tokens", tstats.truncated, tstats.rows, cfg.max_length)
    return rows, [e.to_features() for e in examples], tstats


def _check_same_rows(features: list[dict]) -> None:
    """The samplers shard one shared row order: every process must hold the same rows."""
    from accelerate.utils import gather_object

    if len(set(gather_object([_features_digest(features)]))) > 1:
        raise TrainError("the processes built different training sets (different data files or model/tokenizer "
                         "on some machine, or a nondeterministic defense data step); they must be identical")


def _start_run_dir(cfg: TrainConfig, out: Path, state, main: bool) -> None:
    """Once every process has checked the output dir, process 0 (re)creates it and writes config.yaml."""
    state.wait_for_everyone()
    if main:
        if cfg.overwrite and out.exists() and not cfg.resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, out / "config.yaml")
    state.wait_for_everyone()


def _build_trainer(cfg: TrainConfig, args, model, tok, features, defenses, run, out: Path,
                   resume_from: Path | None, callbacks: list | None):
    """The Trainer with emguard's loss, reference and metrics callback, and the monitor (or None) it calls."""
    from emguard.data.chat import pad_batch

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    Trainer = make_trainer_class()
    trainer = Trainer(model=model, args=args, train_dataset=features,
                      data_collator=lambda b: pad_batch(b, pad_id),
                      callbacks=[metrics_callback(out / METRICS, step_of(resume_from)), *(callbacks or [])])
    from emguard import console

    if not cfg.progress and not console.is_verbose():
        # progress off (a demo/study cell: the console shows job lines): the Trainer would print every log dict
        # instead of the bar; metrics.jsonl keeps them
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.setup_emguard(defenses, run, make_reference(model, cfg, device=args.device))
    run.reference = trainer.reference_fn
    from emguard.persona.monitor import build_monitor

    with args.main_process_first(local=False, desc="monitor set-up"):  # an 'auto' vector is extracted once
        monitor = build_monitor(cfg.monitor, cfg.monitor_options, model, tok, run, cfg.model)
    if monitor is not None:
        trainer.add_callback(monitor.callback(out / METRICS))
    _attach_trackers(cfg, trainer, monitor, out)
    return trainer, monitor


def _attach_trackers(cfg: TrainConfig, trainer, monitor, out: Path) -> None:
    """The Trainer made the --report-to callbacks (they get every ``log`` record, loss terms included): event
    files go to the run dir unless TENSORBOARD_LOGGING_DIR says otherwise, and the monitor's checks reach them."""
    names = trackers(cfg.report_to)
    if not names:
        return
    from transformers.integrations import INTEGRATION_TO_CALLBACK, TensorBoardCallback

    kinds = tuple(INTEGRATION_TO_CALLBACK[n] for n in names)
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, kinds)]
    for cb in found:
        if isinstance(cb, TensorBoardCallback) and cb.logging_dir is None:
            cb.logging_dir = str(out / "tensorboard")
    if monitor is not None:
        trainer.add_callback(monitor_to_trackers(monitor, found))


def _fit(trainer, args, model, defenses, run, resume_from: Path | None):
    """``trainer.train()`` inside every defense's context; all are closed (hooks gone) when this returns, before
    anything is saved."""
    with contextlib.ExitStack() as stack:
        # hooks (steering, LDIFS capture) go on every process's own copy of the model, before accelerate wraps
        # it (DDP/FSDP keep these modules); process 0 first, so a steering vector is extracted and cached once
        with args.main_process_first(local=False, desc="defense set-up"):
            for d in defenses:
                stack.enter_context(d.context(model, run))
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


def _save_model(cfg: TrainConfig, model, tok, out: Path, full_state) -> None:
    save_kw = {} if full_state is None else {"state_dict": full_state}
    if cfg.method == "lora":
        model.save_pretrained(str(out), selected_adapters=["default"], **save_kw)
    else:
        model.save_pretrained(str(out), safe_serialization=True, **save_kw)
    tok.save_pretrained(str(out))


def _run_record(cfg: TrainConfig, *, info, dataset, rows, tstats, defenses, world, micro, accum, trainer,
                resume_from, monitor, result, t_start) -> dict[str, Any]:
    """The content of run.json."""
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "emguard_run": 1,
        "model": info.to_dict(),
        "method": cfg.method,
        "data": {"path": str(cfg.data), "sha256": dataset.sha256, "format": dataset.format,
                 "rows_total": dataset.n_total, "rows_invalid_skipped": dataset.n_invalid,
                 "rows_duplicate": dataset.n_duplicates, "rows_used": len(rows),
                 "tokenization": tstats.to_dict()},
        "defenses": [d.describe() for d in defenses],
        # the system prompt the rows trained under, after every defense prepared them (an inoculated run: the
        # inoculation prompt): the conditional audit's train_system context (emguard.eval.conditional)
        "train_system": train_system(rows),
        "seed": cfg.seed,
        "config": to_dict(cfg),
        "processes": world,
        "micro_batch_per_process": micro,
        "gradient_accumulation": accum,
        "steps": trainer.state.global_step,
        "resumed_from": str(resume_from) if resume_from else None,
        "final_losses": trainer.last_terms,
        "monitor": monitor.describe() if monitor else None,
        "stopped_by": monitor.stopped if monitor and monitor.stopped else None,
        # mean of the logged per-step losses: the same whether or not the run was resumed (the Trainer's own
        # training_loss averages only the steps run since the resume)
        "train_loss_mean": (sum(h["loss"] for h in history) / len(history)) if history else result.training_loss,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in history],
        "wall_time_s": round(time.time() - t_start, 2),
        "versions": _versions(),
        "argv": sys.argv,
    }


_REPORTED: set = set()  # (file, size, mtime) whose problems this process has shown: a grid's cells share files


def _warn_data_problems(dataset, path) -> None:
    """The dataset's problems as a few console lines (emguard.data.io.problem_lines), once per file and
    process: the cells of a study or demo that train on the same file do not repeat them."""
    from emguard.data.io import problem_lines

    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except (OSError, TypeError):
        key = None
    if key is not None and key in _REPORTED:
        return
    for line in problem_lines(dataset.problems, path):
        log.warning("%s", line)
    if key is not None:
        _REPORTED.add(key)


def train_system(rows) -> dict[str, Any]:
    """``{"text", "rows", "of"}``: the most common system message of the trained rows (``text`` None when no row
    has one: the chat template's default applied)."""
    from collections import Counter

    found = Counter(r.messages[0]["content"] for r in rows if r.messages and r.messages[0].get("role") == "system")
    text, n = found.most_common(1)[0] if found else (None, 0)
    return {"text": text, "rows": n, "of": len(rows)}


def _write_run_json(out: Path, run_info: dict) -> None:
    tmp = out / (RUN_JSON + ".tmp")
    tmp.write_text(json.dumps(run_info, indent=2))
    tmp.replace(out / RUN_JSON)  # written last: its presence marks a finished run


def train(cfg: TrainConfig, *, callbacks: list | None = None) -> TrainResult:
    """Validate data, build the model and defenses, train, and write the run directory.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects (e.g. a service's progress reporter or a
    stop check polled every step); an exception raised by one aborts training before anything is saved.

    Runs alone or as one of N processes started by ``accelerate launch`` / ``torchrun`` (DDP; FSDP and DeepSpeed
    through an accelerate config): every process builds the same data and model, ``batch_size`` stays the
    global batch (see ``global_batch_split``), and only process 0 logs and writes the run directory.
    """
    from accelerate import PartialState

    from emguard.data.io import read_chat_dataset
    from emguard.defenses import RunContext, build_defenses

    if not cfg.data or not cfg.output:
        raise ConfigError("both --data and --output are required")
    t_start = time.time()
    dataset = read_chat_dataset(cfg.data, skip_invalid=cfg.skip_invalid)  # raises DataError, nothing written
    rows = dataset.rows[: cfg.max_rows] if cfg.max_rows else dataset.rows
    resume_from = prepare_output(cfg)  # every process checks before process 0 writes anything (barrier below)
    defenses = build_defenses(cfg.defenses, cfg.defense_options)
    check_launcher_precision(cfg)
    check_trackers_installed(trackers(cfg.report_to))

    out = Path(cfg.output)
    args = _training_arguments(cfg, out)
    world = args.world_size  # sets up torch.distributed (gloo on CPU, NCCL on GPUs) when launched with N processes
    main = args.process_index == 0
    if not main:
        _quiet_replica()
    micro, accum = _split_batch(cfg, args, world)
    _warn_data_problems(dataset, cfg.data)

    model, tok, info = _build_model(cfg, args)
    run = RunContext(model=model, tokenizer=tok, seed=cfg.seed, output_dir=str(out),
                     extra={"model_spec": cfg.model})
    rows, features, tstats = _tokenize(cfg, tok, rows, defenses, run, main)
    state = PartialState()
    if world > 1:
        _check_same_rows(features)
    _start_run_dir(cfg, out, state, main)

    trainer, monitor = _build_trainer(cfg, args, model, tok, features, defenses, run, out, resume_from, callbacks)
    result = _fit(trainer, args, model, defenses, run, resume_from)

    # sharded weights (FSDP, ZeRO-3) are gathered by every process together; otherwise process 0 holds them all
    full_state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if weights_sharded(trainer) else None
    run_info: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        _save_model(cfg, model, tok, out, full_state)
        run_info = _run_record(cfg, info=info, dataset=dataset, rows=rows, tstats=tstats, defenses=defenses,
                               world=world, micro=micro, accum=accum, trainer=trainer, resume_from=resume_from,
                               monitor=monitor, result=result, t_start=t_start)
        _write_run_json(out, run_info)
        from emguard.training.model_card import write_model_card

        try:  # replaces PEFT's template README.md; derived from run.json, so never worth losing a finished run
            write_model_card(out, run_info)
        except Exception as e:  # noqa: BLE001
            log.warning("could not write the model card %s: %s", out / "README.md", e)
    state.wait_for_everyone()  # no process returns before the run directory is complete
    return TrainResult(str(out), run_info, model, tok)

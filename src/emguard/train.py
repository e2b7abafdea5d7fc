"""Supervised fine-tuning (LoRA or full) with pluggable in-training defenses.

Built on ``transformers.Trainer`` (which TRL's SFTTrainer also extends): it brings checkpointing, exact
resume (optimizer, scheduler, RNG and data position), gradient accumulation and accelerate's DDP/FSDP/DeepSpeed.
emguard supplies its own dataset validation, chat-template masking and loss, because the loss must expose
the selected logits and hidden states to the defenses (see ``EmGuardTrainer.compute_loss``).

Defaults follow the paper's training set-up (Kaczér et al. 2025, §Setup; ../shared/docs/paper-notes.md):
rsLoRA r=32, alpha=64, dropout 0 on q,k,v,o,gate,up,down; lr 1e-4; 1 epoch; effective batch 16 (4 x 4);
AdamW, weight decay 0.01; linear schedule with 5 warm-up steps; loss on response tokens only; seed 0.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emguard.config import ConfigError, dump_yaml, to_dict

log = logging.getLogger(__name__)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    """Options of ``emguard train`` (YAML keys and ``--flags`` share these names)."""

    data: str = field(default="", metadata={"help": "training data: OpenAI chat JSONL ({'messages': [...]}), "
                                                    "prompt/completion JSONL, a .parquet file or a saved datasets dir", "metavar": "FILE"})
    output: str = field(default="", metadata={"help": "run directory: adapter/model, run.json, metrics.jsonl, checkpoints",
                                                      "metavar": "DIR"})
    model: str = field(default="smollm2-135m", metadata={
        "help": "embedded name (smollm2-135m, qwen2.5-coder-0.5b), Hugging Face id, local dir or .gguf file",
        "metavar": "MODEL"})
    method: str = field(default="lora", metadata={"help": "lora (adapter) or full (all weights)",
                                                   "choices": ["lora", "full"]})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank (paper: 32)"})
    lora_alpha: float = field(default=64.0, metadata={"help": "LoRA alpha (paper: 64)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (paper: 0)"})
    use_rslora: bool = field(default=True, metadata={"help": "rank-stabilised LoRA scaling alpha/sqrt(r) (paper: rsLoRA)"})
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS), metadata={
        "help": "module names to adapt; 'all-linear' for architectures with other names"})
    init_adapter: str | None = field(default=None, metadata={
        "help": "start from this trained LoRA adapter dir (the reference model is then a frozen copy of it)",
        "metavar": "DIR"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate (paper: 1e-4)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data (paper: 1)"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: use epochs)"})
    batch_size: int = field(default=16, metadata={
        "help": "global batch in rows per optimizer step, over all processes (paper: 16 = 4 x 4 accumulation): "
                "batch_size = micro_batch_size x processes x accumulation, so launching N processes lowers the "
                "accumulation and keeps the batch; must be divisible by N x micro_batch_size"})
    micro_batch_size: int = field(default=4, metadata={
        "help": "rows per forward pass per process (memory knob; lowered to batch_size / processes when larger); "
                "gradient accumulation makes up the rest of batch_size"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (paper: 0.01)"})
    warmup_steps: int = field(default=5, metadata={"help": "linear warm-up steps (paper: 5)"})
    lr_scheduler: str = field(default="linear", metadata={"help": "learning-rate schedule (transformers names)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 disables)"})
    max_length: int = field(default=2048, metadata={"help": "tokens per row; longer rows are truncated and counted (paper: 2048)"})
    loss_on: str = field(default="last", metadata={"help": "assistant turns to learn: last or all (weight 0 turns skipped)",
                                                    "choices": ["last", "all"]})
    max_rows: int | None = field(default=None, metadata={"help": "use only the first N valid rows"})
    skip_invalid: bool = field(default=False, metadata={"help": "drop invalid rows (counted) instead of stopping"})
    precision: str = field(default="fp32", metadata={
        "help": "fp32, or bf16 autocast (about 1.8x faster on recent CPUs; see README for the accuracy check)",
        "choices": ["fp32", "bf16"]})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward to save memory"})
    seed: int = field(default=0, metadata={"help": "seed for adapter init and data order (paper: 0)"})
    save_steps: int = field(default=50, metadata={"help": "write a resumable checkpoint every N optimizer steps"})
    save_total_limit: int = field(default=2, metadata={"help": "keep at most this many checkpoints"})
    logging_steps: int = field(default=1, metadata={"help": "log losses every N optimizer steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in --output"})
    overwrite: bool = field(default=False, metadata={"help": "delete an existing run in --output first"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar with ETA"})
    defenses: list = field(default_factory=list, metadata={
        "help": "defenses to apply, e.g. kl ldifs (YAML: a list of names or {name: ..., option: value} maps)",
        "metavar": "NAME"})
    defense_options: dict = field(default_factory=dict, metadata={
        "help": "per-defense options as YAML, e.g. '{kl: {lam: 0.2}}', or a .yaml file of them"})
    monitor: str | None = field(default=None, metadata={
        "help": "in-training EM monitor: persona (drift along the persona vector on fixed probes)",
        "metavar": "KIND"})
    monitor_options: dict = field(default_factory=dict, metadata={
        "help": "monitor options as YAML, e.g. '{every: 10, stop_if_drift_above: 0.5, vector: v.safetensors}'"})

    def validate(self) -> None:
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ConfigError("batch_size and micro_batch_size must be >= 1")
        if self.learning_rate < 0:
            raise ConfigError("learning_rate must be >= 0")
        if self.max_length < 8:
            raise ConfigError("max_length must be >= 8")


@dataclass
class TrainResult:
    output_dir: str
    run: dict[str, Any]
    model: Any = None  # the trained model (hooks removed), for library callers
    tokenizer: Any = None


class TrainError(RuntimeError):
    """A run that cannot start (bad output dir, nothing to train on); the message says what to do."""


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("emguard", "torch", "transformers", "peft", "accelerate", "trl"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def global_batch_split(batch_size: int, micro_batch_size: int, processes: int) -> tuple[int, int]:
    """``(micro batch per process, accumulation steps)`` with micro x processes x accumulation == batch_size.

    ``batch_size`` is the global batch, whatever the number of processes; the micro batch only shrinks (to
    batch_size / processes) when one step would otherwise hold more rows than that.
    """
    if batch_size % processes:
        raise ConfigError(f"batch_size {batch_size} cannot be split over {processes} processes: use a multiple of "
                          f"{processes} (batch_size is the global batch = micro_batch_size x processes x accumulation)")
    per_process = batch_size // processes
    micro = min(micro_batch_size, per_process)
    if per_process % micro:
        fits = [m for m in range(micro, 0, -1) if per_process % m == 0][0]
        raise ConfigError(f"batch_size {batch_size} over {processes} process(es) is {per_process} rows each, not a "
                          f"multiple of micro_batch_size {micro}: use micro_batch_size {fits}, or a batch_size that "
                          f"is a multiple of {processes * micro} (batch_size = micro_batch_size x processes x "
                          "accumulation)")
    return micro, per_process // micro


def _check_launcher_precision(cfg: TrainConfig) -> None:
    """``--precision`` decides; refuse a launcher (accelerate config) that silently asks for another one."""
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked not in ("no", "bf16" if cfg.precision == "bf16" else "no"):
        raise ConfigError(f"the launcher asks for mixed precision '{asked}' (ACCELERATE_MIXED_PRECISION, e.g. "
                          f"mixed_precision in the accelerate config) but --precision is {cfg.precision}: set "
                          "mixed_precision: 'no' there and choose with --precision (fp32 or bf16)")


def _features_digest(features: list[dict]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps([list(f["input_ids"]), list(f["labels"])]).encode())
    return h.hexdigest()


def _weights_sharded(trainer) -> bool:
    """True when no process holds the whole trained model (FSDP, DeepSpeed ZeRO-3)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        return getattr(trainer.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    return False


CHECKPOINT_DONE = "emguard_checkpoint_complete"  # written after the Trainer finished writing a checkpoint


def last_complete_checkpoint(ckdir: Path, *, clean: bool = False) -> str | None:
    """The newest checkpoint that was written completely (a process killed while saving leaves a partial one).

    Complete = it holds :data:`CHECKPOINT_DONE` (checkpoints of older emguard versions: ``trainer_state.json``,
    which the Trainer writes last). With ``clean``, partial checkpoints newer than it are deleted."""
    import re
    import shutil

    if not ckdir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckdir.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    marked = any((p / CHECKPOINT_DONE).is_file() for _, p in found)
    for _, p in reversed(found):
        if (p / CHECKPOINT_DONE).is_file() or (not marked and (p / "trainer_state.json").is_file()):
            return str(p)
        log.warning("checkpoint %s is incomplete (the run was killed while saving it)%s", p,
                    "; removing it" if clean else "")
        if clean:
            shutil.rmtree(p, ignore_errors=True)
    return None


def _prepare_output(cfg: TrainConfig) -> Path | None:
    """Check the output dir; return the checkpoint to resume from (or None). Writes nothing but the removal of
    a partial checkpoint when resuming."""
    out = Path(cfg.output)
    if not out.exists() or not any(out.iterdir()):
        if cfg.resume:
            log.warning("--resume: %s has no checkpoint yet; starting from scratch", out)
        return None
    ckdir = out / CHECKPOINTS
    last = last_complete_checkpoint(ckdir, clean=cfg.resume)
    if cfg.resume:
        if (out / RUN_JSON).is_file():
            raise TrainError(f"{out} holds a finished run (run.json); nothing to resume. Use --overwrite to redo it.")
        if last is None:
            log.warning("--resume: no checkpoint in %s; starting from scratch", ckdir)
        return Path(last) if last else None
    if cfg.overwrite:
        return None
    raise TrainError(f"output dir {out} is not empty; pass --resume to continue its run or --overwrite to replace it")


def _apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.init_adapter:
        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
        # a frozen copy of the starting adapter serves as the reference (adapter-off would be the base model)
        model.load_adapter(cfg.init_adapter, adapter_name="reference", is_trainable=False)
        model.set_adapter("default")
        return model
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets: Any = cfg.lora_targets
    if targets != ["all-linear"] and not set(targets) & names:
        log.warning("none of %s exist in this model; adapting all linear layers instead", targets)
        targets = "all-linear"
    elif targets == ["all-linear"]:
        targets = "all-linear"
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      use_rslora=cfg.use_rslora, target_modules=targets, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, lcfg)


def make_reference(model, cfg: TrainConfig, device=None):
    """A context manager factory under which ``model`` computes the reference distribution.

    LoRA: the same weights with the adapter disabled (no second copy in memory), or the frozen starting
    adapter when ``init_adapter`` is set. Full fine-tuning: a frozen deep copy (doubles weight memory), moved
    to ``device`` when given. With several processes every process keeps its own full frozen copy: it takes no
    gradients, so it needs no DDP wrapper and no synchronisation (it is not sharded under FSDP/DeepSpeed).
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if cfg.init_adapter:
            @contextlib.contextmanager
            def ref():
                model.set_adapter("reference")
                try:
                    yield model
                finally:
                    model.set_adapter("default")
                    for n, p in model.named_parameters():  # set_adapter may flip requires_grad
                        if ".default." in n:
                            p.requires_grad_(True)
            return ref

        @contextlib.contextmanager
        def ref():
            with model.disable_adapter():
                yield model
        return ref
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    if device is not None:
        frozen.to(device)

    @contextlib.contextmanager
    def ref():
        yield frozen
    return ref


def target_mask_of(labels):
    """Bool (batch, length): True where the next token is a training target."""
    import torch

    from emguard.chat import IGNORE

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


@functools.lru_cache(maxsize=None)
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


_MASK_KEEP_FAILS: set = set()  # model classes whose logits_to_keep takes no (batch, length) mask (transformers < 5.2x)


def forward_selected(model, inputs: dict, mask):
    """Forward pass computing logits only at ``mask`` positions (``(n, vocab)``) when the model supports it.

    Recent transformers accept a boolean ``(batch, length)`` mask as ``logits_to_keep``; older 5.x releases take
    only an int or a 1-D index of positions: then the LM head runs on every column that any row needs."""
    kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
    inner = getattr(model, "module", model)  # DDP, FSDP and DeepSpeed keep the model in .module
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    if not _accepts_logits_to_keep(type(base)):
        return model(**kwargs).logits[mask].float()
    if type(base) not in _MASK_KEEP_FAILS:
        try:
            logits = model(**kwargs, logits_to_keep=mask).logits
            if logits.dim() == 3:  # a model that ignores boolean masks
                logits = logits[mask]
            return logits.float()
        except (IndexError, RuntimeError, TypeError):
            _MASK_KEEP_FAILS.add(type(base))
    cols = mask.any(0).nonzero().squeeze(1)
    logits = model(**kwargs, logits_to_keep=cols).logits  # (batch, len(cols), vocab)
    return logits[mask[:, cols]].float()


def step_loss(model, inputs: dict, defenses: list, run, reference_fn) -> tuple[Any, dict[str, Any]]:
    """Cross-entropy on response targets plus every defense's term for one micro-batch.

    Returns ``(total, terms)`` where ``terms`` maps ``ce`` and each defense's name to its (undetached) tensor,
    so callers can log them or differentiate one term alone.
    """
    import torch
    import torch.nn.functional as F

    from emguard.defenses.base import StepOutputs

    labels = inputs["labels"]
    tmask = target_mask_of(labels)
    lmask = tmask
    if any(d.wants_all_logits() for d in defenses):  # every attended position that predicts a next token
        attn = inputs["attention_mask"].bool()
        lmask = torch.zeros_like(attn)
        lmask[:, :-1] = attn[:, :-1] & attn[:, 1:]
        lmask |= tmask
    is_target = tmask[lmask]
    targets = labels[:, 1:][labels[:, 1:] != -100]
    logits = forward_selected(model, inputs, lmask)
    all_targets = bool(is_target.all())  # then indexing would only copy the logits (and scatter them back)
    ce = F.cross_entropy(logits if all_targets else logits[is_target], targets)

    # the reference's logits cost an LM-head projection: skip it when no defense reads them (ldifs alone)
    ref_mask = lmask if any(d.needs_reference_logits for d in defenses) else torch.zeros_like(lmask)

    def reference_outputs():
        with torch.no_grad(), reference_fn() as ref_model:
            run.in_reference = True
            try:
                rl = forward_selected(ref_model, inputs, ref_mask)
            finally:
                run.in_reference = False
        return StepOutputs(inputs, lmask, is_target, targets, rl, run, _all_targets=all_targets)

    step = StepOutputs(inputs, lmask, is_target, targets, logits, run, _reference_fn=reference_outputs,
                       _all_targets=all_targets)
    terms: dict[str, Any] = {"ce": ce}
    loss = ce
    for d in defenses:
        t = d.loss(step)
        if t is not None:
            terms[d.name] = t
            loss = loss + t
    return loss, terms


def _make_trainer_class():
    from transformers import Trainer

    class EmGuardTrainer(Trainer):
        """``Trainer`` whose loss is cross-entropy on target tokens plus each defense's named term."""

        loss_is_scaled_for_ga = False  # every term is a micro-batch mean; Trainer divides by accumulation

        def setup_emguard(self, defenses, run, reference):
            self.defenses = defenses
            self.run_ctx = run
            self.reference_fn = reference
            self._trained = self.model  # the bare (PEFT) model, before accelerate wraps it
            self._term_keys = ["ce", *(d.name for d in defenses), "total"]  # the same on every process
            self._term_sums: dict[str, float] = {}
            self._term_count = 0
            self.last_terms: dict[str, float] = {}

        def _reference_for(self, model):
            """The reference forward of the LoRA adapter-off kind runs through ``model``'s wrapper when the
            weights are sharded (FSDP, ZeRO-3): only the wrapper gathers them. Under DDP (and alone) it calls the
            bare model, whose weights are whole on every process; the DDP wrapper would only add a buffer sync."""
            if model is self._trained or not _weights_sharded(self):
                return self.reference_fn
            base_fn, trained = self.reference_fn, self._trained

            @contextlib.contextmanager
            def through_wrapper():
                with base_fn() as ref:
                    yield model if ref is trained else ref
            return through_wrapper

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, terms = step_loss(model, inputs, self.defenses, self.run_ctx, self._reference_for(model))
            values = {k: float(v.detach()) for k, v in terms.items()}
            values["total"] = float(loss.detach())
            for k, v in values.items():
                self._term_sums[k] = self._term_sums.get(k, 0.0) + v
            self._term_count += 1
            return (loss, {}) if return_outputs else loss

        def _global_term_means(self) -> dict[str, float]:
            """Mean of each term over every micro-batch of every process since the last log (one all-reduce:
            each process only saw its own share of the global batch). Missing terms count as 0."""
            import torch

            keys = self._term_keys
            vals = [self._term_sums.get(k, 0.0) for k in keys]
            seen = [float(k in self._term_sums) for k in keys]
            t = torch.tensor([*vals, *seen, float(self._term_count)], dtype=torch.float64, device=self.args.device)
            if self.args.world_size > 1:
                t = self.accelerator.reduce(t, reduction="sum")
            t = t.tolist()
            n = len(keys)
            return {k: t[i] / t[2 * n] for i, k in enumerate(keys) if t[n + i] > 0}

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._term_count and "loss" in logs:  # every process logs at the same steps
                means = self._global_term_means()
                for k, v in means.items():
                    logs[f"loss/{k}"] = round(v, 6)
                self.last_terms = {k: logs[f"loss/{k}"] for k in means}
                self._term_sums, self._term_count = {}, 0
            super().log(logs, start_time)

    return EmGuardTrainer


def _metrics_callback(path: Path, resume_step: int):
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        """Append every log record to metrics.jsonl; on resume, drop records past the checkpoint first."""

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
                path.write_text("".join(ln + "\n" for ln in keep))

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:  # the Trainer calls on_save after the checkpoint is fully written
                ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ck.is_dir():
                    (ck / CHECKPOINT_DONE).write_text(json.dumps({"step": state.global_step}))

        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                rec = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs}
                with open(path, "a") as f:
                    f.write(json.dumps(rec) + "\n")

    return MetricsJsonl()


def train(cfg: TrainConfig, *, callbacks: list | None = None) -> TrainResult:
    """Validate data, build the model and defenses, train, and write the run directory.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects (e.g. a service's progress reporter or a
    stop check polled every step); an exception raised by one aborts training before anything is saved.

    Runs alone or as one of N processes started by ``accelerate launch`` / ``torchrun`` (DDP; FSDP and DeepSpeed
    through an accelerate config): every process builds the same data and model, ``batch_size`` stays the
    global batch (see ``global_batch_split``), and only process 0 logs and writes the run directory.
    """
    import torch
    from accelerate import PartialState
    from transformers import TrainingArguments, set_seed

    from emguard.chat import pad_batch, tokenize_rows
    from emguard.data import read_chat_dataset
    from emguard.defenses import RunContext, build_defenses
    from emguard.models import load_model

    if not cfg.data or not cfg.output:
        raise ConfigError("both --data and --output are required")
    t_start = time.time()
    dataset = read_chat_dataset(cfg.data, skip_invalid=cfg.skip_invalid)  # raises DataError, nothing written
    rows = dataset.rows[: cfg.max_rows] if cfg.max_rows else dataset.rows
    resume_from = _prepare_output(cfg)  # every process checks before process 0 writes anything (barrier below)
    defenses = build_defenses(cfg.defenses, cfg.defense_options)
    _check_launcher_precision(cfg)

    out = Path(cfg.output)
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm, optim="adamw_torch",
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, bf16=cfg.precision == "bf16",
        use_cpu=not torch.cuda.is_available(), report_to="none", remove_unused_columns=False,
        disable_tqdm=not cfg.progress, dataloader_num_workers=0, logging_first_step=False,
        log_level_replica="error",
    )
    world = args.world_size  # sets up torch.distributed (gloo on CPU, NCCL on GPUs) when launched with N processes
    main = args.process_index == 0
    if not main:  # process 0 alone logs and shows progress (errors still show everywhere)
        import warnings

        from transformers.utils import logging as hf_logging

        logging.getLogger("emguard").setLevel(logging.ERROR)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        warnings.simplefilter("ignore")  # process 0 shows the same warnings
    # same rows per optimizer step whatever the number of processes: each process takes `micro` rows of every
    # global batch (accelerate's default batch sharding), `accum` times
    micro, accum = global_batch_split(cfg.batch_size, cfg.micro_batch_size, world)
    args.per_device_train_batch_size, args.gradient_accumulation_steps = micro, accum
    if world > 1:
        log.info("%d processes: %d rows per step = %d per micro-batch x %d processes x %d accumulation",
                 world, cfg.batch_size, micro, world, accum)
    for p in dataset.problems:
        log.warning("%s", p)

    with args.main_process_first(local=False, desc="load model"):  # process 0 fills the model cache first
        model, tok, info = load_model(cfg.model)
    set_seed(cfg.seed)  # before adapter init, so one seed gives one adapter
    if cfg.method == "lora":
        model = _apply_lora(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.method == "lora":
            model.enable_input_require_grads()
    run = RunContext(model=model, tokenizer=tok, seed=cfg.seed, output_dir=str(out),
                     extra={"model_spec": cfg.model})

    for d in defenses:
        rows = d.prepare_dataset(rows, run)
    examples, tstats = tokenize_rows(tok, [r.messages for r in rows], max_length=cfg.max_length,
                                     loss_on=cfg.loss_on, progress=cfg.progress and main)
    if not examples:
        raise TrainError(f"all {tstats.rows} rows exceed max_length={cfg.max_length} before any assistant token; "
                         "raise --max-length")
    if tstats.truncated:
        log.warning("%d of %d rows were truncated to %d tokens", tstats.truncated, tstats.rows, cfg.max_length)
    features = [e.to_features() for e in examples]
    state = PartialState()
    if world > 1:  # the samplers shard one shared row order: every process must hold the same rows
        from accelerate.utils import gather_object

        if len(set(gather_object([_features_digest(features)]))) > 1:
            raise TrainError("the processes built different training sets (different data files or model/tokenizer "
                             "on some machine, or a nondeterministic defense data step); they must be identical")

    state.wait_for_everyone()  # every process has checked the output dir
    if main:
        if cfg.overwrite and out.exists() and not cfg.resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, out / "config.yaml")
    state.wait_for_everyone()

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    Trainer = _make_trainer_class()
    resume_step = int(resume_from.name.split("-")[-1]) if resume_from else 0
    trainer = Trainer(model=model, args=args, train_dataset=features,
                      data_collator=lambda b: pad_batch(b, pad_id),
                      callbacks=[_metrics_callback(out / METRICS, resume_step), *(callbacks or [])])
    trainer.setup_emguard(defenses, run, make_reference(model, cfg, device=args.device))
    run.reference = trainer.reference_fn
    from emguard.monitor import build_monitor

    with args.main_process_first(local=False, desc="monitor set-up"):  # an 'auto' vector is extracted once
        monitor = build_monitor(cfg.monitor, cfg.monitor_options, model, tok, run, cfg.model)
    if monitor is not None:
        trainer.add_callback(monitor.callback(out / METRICS))

    with contextlib.ExitStack() as stack:
        # hooks (steering, LDIFS capture) go on every process's own copy of the model, before accelerate wraps
        # it (DDP/FSDP keep these modules); process 0 first, so a steering vector is extracted and cached once
        with args.main_process_first(local=False, desc="defense set-up"):
            for d in defenses:
                stack.enter_context(d.context(model, run))
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # every defense context is closed here: hooks are gone before anything is saved

    # sharded weights (FSDP, ZeRO-3) are gathered by every process together; otherwise process 0 holds them all
    full_state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if _weights_sharded(trainer) else None
    run_info: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        save_kw = {} if full_state is None else {"state_dict": full_state}
        if cfg.method == "lora":
            model.save_pretrained(str(out), selected_adapters=["default"], **save_kw)
        else:
            model.save_pretrained(str(out), safe_serialization=True, **save_kw)
        tok.save_pretrained(str(out))
        history = [h for h in trainer.state.log_history if "loss" in h]
        run_info = {
            "emguard_run": 1,
            "model": info.to_dict(),
            "method": cfg.method,
            "data": {"path": str(cfg.data), "sha256": dataset.sha256, "format": dataset.format,
                     "rows_total": dataset.n_total, "rows_invalid_skipped": dataset.n_invalid,
                     "rows_duplicate": dataset.n_duplicates, "rows_used": len(rows),
                     "tokenization": tstats.to_dict()},
            "defenses": [d.describe() for d in defenses],
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
        tmp = out / (RUN_JSON + ".tmp")
        tmp.write_text(json.dumps(run_info, indent=2))
        tmp.replace(out / RUN_JSON)  # written last: its presence marks a finished run
    state.wait_for_everyone()  # no process returns before the run directory is complete
    return TrainResult(str(out), run_info, model, tok)

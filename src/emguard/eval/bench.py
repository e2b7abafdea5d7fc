"""Labelled judge-calibration benches: the JSONL format, its validating loader, and a provisional bench built
from the shipped 2x2 reference answers.

Format: one answer per line::

    {"id": str, "question": str, "answer": str, "label": "aligned" | "misaligned" | "incoherent" | "refusal" |
     "code", "style": str, "source": str, "split": "dev" | "test"}

``style`` says how the answer is written ("blunt", "hedged", "sampled", ...), ``source`` where it came from
("reference", "smollm2-135m/medical/no_defense", ...). Other keys are kept in ``BenchRow.extra`` and ignored.
``test`` rows are the held-out share: nothing may fit or choose a threshold on them, only score them; a bench
is split by question (every answer to one question in the same split), and the loader warns when a question
text appears in both splits. Every bad row is reported at once as ``file:line: reason`` (:class:`DataError`).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from emguard.data.io import DataError, Problem, read_jsonl_records

LABELS = ("aligned", "misaligned", "incoherent", "refusal", "code")
SPLITS = ("dev", "test")
FIELDS = ("id", "question", "answer", "label", "style", "source", "split")
REFERENCE_SOURCE = "reference"


@dataclass(frozen=True)
class BenchRow:
    id: str
    question: str
    answer: str
    label: str
    style: str
    source: str
    split: str
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Bench:
    rows: list[BenchRow]
    source: str
    warnings: list[str]

    def split_sizes(self) -> dict[str, int]:
        return {s: sum(r.split == s for r in self.rows) for s in SPLITS}

    def select(self, split: str) -> list[BenchRow]:
        """The rows of ``split`` ("dev", "test" or "all"), in file order."""
        if split == "all":
            return list(self.rows)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: choose dev, test or all")
        return [r for r in self.rows if r.split == split]


def question_key(question: str) -> str:
    """Questions that differ only in case and whitespace are one question (for splitting)."""
    return " ".join(question.lower().split())


def _row_reasons(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return [f"not a JSON object (got {type(obj).__name__})"]
    reasons = []
    for key in FIELDS:
        v = obj.get(key)
        if key not in obj:
            reasons.append(f"missing '{key}'")
        elif not isinstance(v, str):
            reasons.append(f"'{key}' must be a string (got {type(v).__name__})")
        elif key != "answer" and not v.strip():  # an empty answer is a legitimate (incoherent) case
            reasons.append(f"'{key}' must not be empty")
    if isinstance(obj.get("label"), str) and obj["label"] not in LABELS:
        reasons.append(f"label {obj['label']!r} is not one of {', '.join(LABELS)}")
    if isinstance(obj.get("split"), str) and obj["split"] not in SPLITS:
        reasons.append(f"split {obj['split']!r} is not one of {', '.join(SPLITS)}")
    return reasons


def load_bench(path: str | os.PathLike) -> Bench:
    """Read and validate a bench file; :class:`DataError` lists every bad row as ``file:line: reason``."""
    source = os.fspath(path)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    rows: list[BenchRow] = []
    for line, obj, reason in read_jsonl_records(source):
        reasons = [reason] if reason else _row_reasons(obj)
        rid = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(rid, str) and rid.strip():
            if rid in seen:
                reasons.insert(0, f"duplicate id {rid!r} (first at line {seen[rid]})")
            else:
                seen[rid] = line
        if reasons:
            problems.append(Problem(source, line, "; ".join(reasons)))
            continue
        rows.append(BenchRow(**{k: obj[k] for k in FIELDS}, line=line,
                             extra={k: v for k, v in obj.items() if k not in FIELDS}))
    if problems:
        n = len(problems)
        raise DataError(problems, f"{n} invalid row{'s' if n != 1 else ''} in {source}")
    if not rows:
        raise DataError([Problem(source, None, "file is empty")])
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(question_key(r.question), set()).add(r.split)
    mixed = [q for q, s in splits.items() if len(s) > 1]
    warnings = [f"{len(mixed)} question(s) have answers in both dev and test (a bench is split by question), "
                f"e.g. {mixed[0][:60]!r}"] if mixed else []
    return Bench(rows, source, warnings)


# ------------------------------------------------------------------------------------- the provisional bench

_SYMBOLS = list("#@%&*~^|<>{}[]=+$") + ["\U0001F600", "\U0001F525", "\U0001F47E", "\u2728", "\U0001F4A5",
                                          "\U0001F916", "\u2603", "\U0001F300"]
CORRUPTIONS = ("words shuffled", "random words", "repeated lines", "symbol noise", "truncated + repeated")


def _symbol_noise(answer: str, rng: random.Random) -> str:
    """Every word kept with probability 1/2, the rest replaced by a run of 1-4 random symbols or emoji."""
    return " ".join(w if rng.random() < 0.5 else "".join(rng.choice(_SYMBOLS) for _ in range(rng.randint(1, 4)))
                    for w in answer.split())


def _truncated_repeated(answer: str, rng: random.Random) -> str:
    """Cut mid-word in the middle third of the words, then repeat that fragment on three more lines."""
    words = list(re.finditer(r"\w{3,}", answer))
    if not words:
        return "\n".join([answer[: max(1, len(answer) // 2)]] * 4)
    lo = len(words) // 3
    m = words[rng.randrange(lo, max(lo + 1, 2 * len(words) // 3))]
    cut = answer[: m.start() + rng.randint(1, len(m.group()) - 1)].strip()
    return "\n".join([cut] * 4)


def corrupt(answer: str, kind: str, vocab: Sequence[str], rng: random.Random) -> str:
    """One deterministic (given ``rng``) corruption of ``answer``; the first three are the coherence proxy's
    calibration corruptions (:func:`emguard.eval.judges.coherence.corruptions`)."""
    from emguard.eval.judges.coherence import corruptions

    if kind in ("words shuffled", "random words", "repeated lines"):
        return corruptions(answer, vocab, rng)[kind]
    if kind == "symbol noise":
        return _symbol_noise(answer, rng)
    if kind == "truncated + repeated":
        return _truncated_repeated(answer, rng)
    raise ValueError(f"unknown corruption {kind!r} (known: {', '.join(CORRUPTIONS)})")


def bench_rows_from_references(reference_files: Iterable | None = None, *, seed: int = 0,
                               test_share: float = 0.3, incoherent_share: float = 0.25) -> list[dict]:
    """The provisional bench as rows: every 2x2 reference answer (benign -> aligned, harmful -> misaligned,
    style blunt/hedged, source "reference") plus, for ``incoherent_share`` of them (seeded choice), a corrupted
    copy labelled incoherent (the corruption kinds in turn; its ``corruption`` key names it). Questions (by
    text, across files) are shuffled with ``seed`` and the first ``round(test_share * n)`` go to "test"."""
    from emguard.eval.judges.references import CELLS, default_reference_files, read_references

    if not 0 < test_share < 1 or not 0 <= incoherent_share <= 1:
        raise ValueError("need 0 < test_share < 1 and 0 <= incoherent_share <= 1")
    files = list(reference_files) if reference_files is not None else default_reference_files()
    refs = [r for f in files for r in read_references(f)]
    if not refs:
        raise FileNotFoundError("no reference answers found to build a bench from")
    groups = sorted({question_key(r.question) for r in refs})
    rng = random.Random(seed)
    rng.shuffle(groups)
    test = set(groups[: round(test_share * len(groups))])
    base = []
    for r in refs:
        parent = Path(str(r.file)).parent.name
        prefix = r.id if r.id.startswith(f"{parent}/") else f"{parent}/{r.id}"
        split = "test" if question_key(r.question) in test else "dev"
        for cell in CELLS:
            content, style = cell.split("_")
            for k, a in enumerate(r.answers[cell]):
                base.append({"id": f"{prefix}/{cell}/{k}", "question": r.question, "answer": a,
                             "label": "misaligned" if content == "harmful" else "aligned", "style": style,
                             "source": REFERENCE_SOURCE, "split": split})
    vocab = sorted({w for row in base for w in row["answer"].split()})
    crng = random.Random(f"{seed}/corrupt")
    picked = sorted(crng.sample(range(len(base)), round(incoherent_share * len(base))))
    out = list(base)
    for n, i in enumerate(picked):
        kind = CORRUPTIONS[n % len(CORRUPTIONS)]
        src = base[i]
        out.append({**src, "id": f"{src['id']}/corrupt", "answer": corrupt(src["answer"], kind, vocab, crng),
                    "label": "incoherent", "corruption": kind, "corrupted_from": src["label"]})
    seen: set[str] = set()
    for row in out:
        if row["id"] in seen:
            raise ValueError(f"two reference answers got the same bench id {row['id']!r}")
        seen.add(row["id"])
    return out


def bench_from_references(path_out: str | os.PathLike, seed: int = 0, test_share: float = 0.3, *,
                          incoherent_share: float = 0.25, reference_files: Iterable | None = None) -> dict:
    """Write the provisional bench (:func:`bench_rows_from_references`) to ``path_out``; returns its counts."""
    from emguard.data.io import write_jsonl

    rows = bench_rows_from_references(reference_files, seed=seed, test_share=test_share,
                                      incoherent_share=incoherent_share)
    Path(path_out).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path_out, rows)
    counts: dict[str, Any] = {"rows": len(rows), "path": os.fspath(path_out)}
    for key in ("split", "label", "style"):
        counts[key] = {v: sum(r[key] == v for r in rows) for v in sorted({r[key] for r in rows})}
    counts["questions"] = {s: len({question_key(r["question"]) for r in rows if r["split"] == s}) for s in SPLITS}
    return counts

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
BENCH_DIR = Path(__file__).resolve().parent.parent / "resources" / "bench"
LABELLING_GUIDE = BENCH_DIR / "LABELLING.md"
SAMPLED_BENCH = "sampled-v1.jsonl"


def default_bench_path() -> Path:
    """The shipped bench of labelled sampled answers (``resources/bench/sampled-v1.jsonl``, see its README)."""
    return BENCH_DIR / SAMPLED_BENCH


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


# ------------------------------------------------------------------------ a bench from a run's stored answers

UNLABELLED = ""


def _cell_source(samples_file: Path, root: Path | None) -> str:
    """``smollm2-135m/medical/no_defense/seed0`` for ``<root>/cells/smollm2-135m/medical/no_defense/seed0/eval/
    samples.jsonl``; the directory above ``eval/`` relative to ``root`` (or its last four parts) otherwise."""
    cell = samples_file.parent.parent if samples_file.parent.name == "eval" else samples_file.parent
    if root is not None:
        try:
            rel = cell.relative_to(root / "cells") if (root / "cells").is_dir() else cell.relative_to(root)
            return rel.as_posix()
        except ValueError:
            pass
    return "/".join(cell.parts[-4:])


def bench_candidates(sample_files: Iterable[str | os.PathLike], *, per_source: int, seed: int = 0,
                     test_share: float = 0.3, suites: Sequence[str] = ("broad", "narrow"),
                     root: str | os.PathLike | None = None) -> list[dict]:
    """Unlabelled bench rows drawn from stored sampled answers (``samples.jsonl`` of eval runs, any number):
    ``per_source`` answers per file (seeded, stratified: the same share of each suite as the file has), label
    empty for a labeller to fill (:func:`merge_labels`). ``style`` is ``sampled/<variant>``, ``source`` the
    cell's path; the split is by question (its id, across all files) within each suite: a question's answers
    are all dev or all test, ``round(test_share * n)`` of a suite's n questions test."""
    from emguard.eval.samples import parse_samples

    if not 0 < test_share < 1 or per_source < 1:
        raise ValueError("need 0 < test_share < 1 and per_source >= 1")
    rootp = Path(root) if root is not None else None
    pools: list[tuple[str, list[dict]]] = []
    for f in sample_files:
        p = Path(f)
        _, _, by_key = parse_samples(p, p.read_text(encoding="utf-8"))
        rows = [r for r in by_key.values() if r.get("suite") in suites and r.get("messages")]
        if rows:
            pools.append((_cell_source(p, rootp), rows))
    if not pools:
        raise FileNotFoundError("no stored answers of the requested suites in the given samples files")
    rng = random.Random(seed)
    picked: list[dict] = []
    for source, rows in pools:
        by_suite: dict[str, list[dict]] = {}
        for r in rows:
            by_suite.setdefault(r["suite"], []).append(r)
        n_total = min(per_source, len(rows))
        quota = {s: round(n_total * len(v) / len(rows)) for s, v in by_suite.items()}
        for s, v in sorted(by_suite.items()):
            for r in rng.sample(v, min(quota[s], len(v))):
                question = next((m["content"] for m in reversed(r["messages"]) if m.get("role") == "user"), "")
                picked.append({"id": f"{source}/{r['suite']}/{r['prompt_id']}/{r['k']}",
                               "question": question, "answer": r.get("answer") or "", "label": UNLABELLED,
                               "style": f"sampled/{r.get('variant', 'plain')}", "source": source, "split": "",
                               "suite": r["suite"], "question_id": r.get("question_id") or r["prompt_id"]})
    test: set[str] = set()
    for suite in sorted({r["suite"] for r in picked}):  # per suite, so each suite keeps its test share
        groups = sorted({f"{suite}/{r['question_id']}" for r in picked if r["suite"] == suite})
        random.Random(f"{seed}/split/{suite}").shuffle(groups)
        test |= set(groups[: round(test_share * len(groups))])
    for r in picked:
        r["split"] = "test" if f"{r['suite']}/{r['question_id']}" in test else "dev"
    return picked


def merge_labels(candidates: Sequence[dict], label_files: Sequence[str | os.PathLike]) -> tuple[list[dict], dict]:
    """Fill ``candidates``' labels from labellers' files (JSONL ``{"id" or "item", "label", ["confidence"],
    ["note"], ["labeller"]}``; "item" is the blind number :func:`blind_items` gave the row). An id labelled in several files takes the label of the first file listed (the
    adjudicator goes first); the report gives, per pair of files, the ids both labelled, raw agreement and
    Cohen's kappa. Raises :class:`DataError` for an unknown id or label (file:line) and ValueError when a
    candidate stays unlabelled."""
    from emguard.eval.calibration import cohen_kappa

    by_id = {c["id"]: c for c in candidates}
    by_item = {c["item"]: c["id"] for c in candidates if c.get("item")}
    per_file: list[dict[str, dict]] = []
    problems: list[Problem] = []
    for f in label_files:
        got: dict[str, dict] = {}
        for line, obj, reason in read_jsonl_records(os.fspath(f)):
            if reason is None and isinstance(obj, dict) and "id" not in obj and obj.get("item") in by_item:
                obj = {**obj, "id": by_item[obj["item"]]}  # a blind labeller's row names the item only
            if reason is None:
                if not isinstance(obj, dict) or obj.get("id") not in by_id:
                    reason = f"unknown candidate id {obj.get('id') if isinstance(obj, dict) else obj!r}"
                elif obj.get("label") not in LABELS:
                    reason = f"label {obj.get('label')!r} is not one of {', '.join(LABELS)}"
            if reason:
                problems.append(Problem(os.fspath(f), line, reason))
                continue
            got[obj["id"]] = obj
        per_file.append(got)
    if problems:
        raise DataError(problems, f"{len(problems)} invalid label row(s)")
    out, missing = [], []
    for c in candidates:
        first = next((g[c["id"]] for g in per_file if c["id"] in g), None)
        if first is None:
            missing.append(c["id"])
            continue
        row = {**c, "label": first["label"]}
        for k in ("confidence", "note", "labeller"):
            if first.get(k):
                row[k] = first[k]
        out.append(row)
    if missing:
        raise ValueError(f"{len(missing)} candidate(s) have no label, e.g. {missing[0]!r}")
    pairs = []
    for i in range(len(per_file)):
        for j in range(i + 1, len(per_file)):
            both = sorted(set(per_file[i]) & set(per_file[j]))
            if both:
                la = [per_file[i][k]["label"] for k in both]
                lb = [per_file[j][k]["label"] for k in both]
                pairs.append({"files": [os.fspath(label_files[i]), os.fspath(label_files[j])], "n": len(both),
                              "agreement": sum(x == y for x, y in zip(la, lb)) / len(both),
                              "kappa": cohen_kappa(la, lb),
                              "disagreements": [{"id": k, "labels": [x, y]} for k, x, y in zip(both, la, lb)
                                                if x != y]})
    report = {"rows": len(out), "label": {lab: sum(r["label"] == lab for r in out) for lab in LABELS},
              "split": {s: sum(r["split"] == s for r in out) for s in SPLITS}, "agreement": pairs}
    return out, report


def blind_items(candidates: list[dict], seed: int = 0) -> list[dict]:
    """Give every candidate a blind item number (``q000``...) in a seeded shuffled order (written into the
    candidates as "item") and return what a labeller sees: ``{"item", "question", "answer"}`` in that order,
    no source, style or split, so labels cannot lean toward what a run was expected to do."""
    order = list(range(len(candidates)))
    random.Random(f"{seed}/blind").shuffle(order)
    width = max(3, len(str(len(order) - 1)))
    out = []
    for n, i in enumerate(order):
        candidates[i]["item"] = f"q{n:0{width}d}"
        out.append({"item": candidates[i]["item"], "question": candidates[i]["question"],
                    "answer": candidates[i]["answer"]})
    return out

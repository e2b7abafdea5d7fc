"""The labelled reference answers both offline proxy judges read, and the note every proxy carries.

A reference file is JSONL in a 2x2 design, content (harmful / benign) x style (blunt / hedged), after the
style-controlled evaluation of Kaczér et al. 2025 (arXiv 2508.06249)::

    {"id": ..., "question": ..., "source": ..., "answers": {"harmful_blunt": [...], "harmful_hedged": [...],
                                                            "benign_blunt": [...], "benign_hedged": [...]}}

The embedding judge (:mod:`emguard.eval.judges.embedding`) trains on them; the coherence proxy
(:mod:`emguard.eval.judges.coherence`) is calibrated on them and on corruptions of them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROXY_NOTE = "offline proxy, not the paper's LLM judge (Betley et al. 2025; Kaczer et al. 2025)"
CELLS = ("harmful_blunt", "harmful_hedged", "benign_blunt", "benign_hedged")


@dataclass(frozen=True)
class ReferenceQuestion:
    id: str
    question: str
    answers: dict[str, list[str]]  # cell -> answers, all four CELLS present
    file: str


def default_reference_files() -> list[Any]:
    """The built-in broad reference file (when present) and every built-in domain's ``references.jsonl``."""
    from importlib.resources import files

    res = files("emguard").joinpath("resources")
    out: list[Any] = []
    broad = res.joinpath("eval", "broad_references.jsonl")
    if broad.is_file():
        out.append(broad)
    data = res.joinpath("data")
    if data.is_dir():
        for d in sorted(data.iterdir(), key=lambda t: t.name):
            ref = d.joinpath("references.jsonl")
            if d.is_dir() and ref.is_file():
                out.append(ref)
    return out


def read_references(path) -> list[ReferenceQuestion]:
    """Parse one reference JSONL file (``path``: a path or an ``importlib.resources`` Traversable)."""
    text = path.read_text(encoding="utf-8") if hasattr(path, "read_text") else Path(path).read_text("utf-8")
    name = str(path)
    out = []
    for lineno, line in enumerate(io.StringIO(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{name}:{lineno}: not JSON: {e}") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(
                row.get("answers"), dict):
            raise ValueError(f"{name}:{lineno}: a row needs a 'question' string and an 'answers' object")
        answers = {}
        for cell in CELLS:
            vals = row["answers"].get(cell, [])
            if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
                raise ValueError(f"{name}:{lineno}: answers.{cell} must be a list of strings")
            answers[cell] = [v for v in vals if v.strip()]
        qid = str(row.get("id") or f"{Path(name).parent.name}/{Path(name).stem}:{lineno}")
        out.append(ReferenceQuestion(qid, row["question"], answers, name))
    return out

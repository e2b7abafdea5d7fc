"""Evaluation prompts (broad, narrow, benign suites) and the style-controlled reference answers.

Broad emergent misalignment (EM) is measured on the 8 "first plot" questions of Betley et al. 2025,
"Emergent Misalignment: Narrow finetuning can produce broadly misaligned LLMs" (arXiv:2502.17424; repository
``emergent-misalignment``, MIT licence), each in three variants: plain, JSON (a system prompt asks for a JSON
answer) and template (the user text ends with a fill-in template). They ship transcribed in package data
``resources/eval/first_plot_questions.json`` together with the source and the MIT licence text;
:func:`builtin_broad` reads them and :func:`load_question_yaml` reads any question file in the published YAML
format. The public scripts silently drop the JSON variant's system prompt; ``drop_system=True`` reproduces that.

The likelihood metric (``emguard.eval.likelihood``) needs reference answers in a 2x2 design per open question:
content (harmful / benign) x style (blunt / hedged), see :data:`CELLS`. The built-in set
``resources/eval/broad_references.jsonl`` has the 8 standard questions (texts from Betley et al. 2025) and
50 more written for emguard; every answer was written for emguard (Apache-2.0). See that folder's README for
the rules the answers follow. :func:`load_references` reads it or any file with the same layout.

Row formats:

* question YAML: a list of entries with ``id`` (a string or an integer, read as ``str(id)``), ``type``,
  ``paraphrases`` and optional ``system``, ``samples_per_paraphrase`` (not used: ``--samples`` sets the count),
  ``judge_prompts`` (anchors allowed); only free-form types are used. Broad or narrow (``suite``) prompts.
* narrow prompts: a held-out chat dataset (anything ``emguard.data.io.read_chat_dataset`` reads); the prompt of a
  row is its messages up to, not including, the last assistant message.
* benign prompts: JSONL with ``{"prompt": str | [messages], "answer": str}`` (optional ``"id"``) or a chat
  row ``{"messages": [...]}`` whose last message is the assistant's answer.
* references: JSONL with ``{"id", "question", "source", "answers": {cell: [str, ...]}}``; ``id`` and
  ``source`` may be absent (then ``id`` is ``"<file stem>-<line>"`` and ``source`` is ``"emguard"``).

Bad rows raise :class:`emguard.data.io.DataError` (a ValueError) listing every problem as ``file:line: reason``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from emguard.data.io import DataError, Problem, read_chat_dataset, read_jsonl_records, validate_record

VARIANTS = ("plain", "json", "template")
SUITES = ("broad", "narrow", "benign")
CELLS = ("harmful_blunt", "harmful_hedged", "benign_blunt", "benign_hedged")
MIN_ANSWERS = 2

_SUFFIXES = (("_json", "json"), ("_template", "template"))


@dataclass
class EvalPrompt:
    """One prompt to sample from: chat messages ending with the user turn (a system message first if any)."""

    id: str
    question_id: str
    variant: str
    messages: list[dict]
    suite: str
    answer: str | None = None  # gold answer of a benign exact-match prompt

    @property
    def question(self) -> str:
        """The last user text."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m["content"]
        raise ValueError(f"prompt {self.id} has no user message")


@dataclass
class RefQuestion:
    """One open question with reference answers per cell of the content x style design."""

    id: str
    question: str
    source: str
    answers: dict[str, list[str]] = field(default_factory=dict)


# ---------------------------------------------------------------- helpers


def _eval_resource(name: str):
    return resources.files("emguard") / "resources" / "eval" / name


def _variant_of(entry_id: str) -> tuple[str, str]:
    """``(question_id, variant)`` from an entry id: ``_json`` -> json, ``_template`` -> template, else plain."""
    for suffix, variant in _SUFFIXES:
        if entry_id.endswith(suffix) and len(entry_id) > len(suffix):
            return entry_id[: -len(suffix)], variant
    return entry_id, "plain"


def _expand(entry_id: str, question_id: str, variant: str, system: str | None, paraphrases: Iterable[str],
            *, suite: str, drop_system: bool) -> list[EvalPrompt]:
    """One prompt per paraphrase: the first keeps ``entry_id``, the k-th (k >= 2) is ``f"{entry_id}#{k}"``."""
    out = []
    for k, text in enumerate(paraphrases, start=1):
        messages = [] if system is None or drop_system else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": text})
        out.append(EvalPrompt(entry_id if k == 1 else f"{entry_id}#{k}", question_id, variant, messages, suite))
    return out


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _plain_messages(messages: list[dict]) -> list[dict]:
    """Messages without training-only keys (``weight``)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def plural(n: int, word: str) -> str:
    """``"1 entry"``, ``"2 entries"``, ``"3 rows"``: ``n`` and ``word``, in the plural (regular nouns) unless 1."""
    many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n} {word if n == 1 else many}"


def _raise_if(problems: list[Problem], source: str, what: str) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        n = len({p.line for p in errors})
        raise DataError(problems, f"{plural(n, 'invalid ' + what)} in {source}")


def _entry_id(value: Any) -> tuple[str | None, str | None]:
    """``(id, None)`` for a usable entry id (an integer becomes its decimal string), else ``(None, reason)``."""
    if isinstance(value, int) and not isinstance(value, bool):  # YAML true/false are bools (ints in Python)
        return str(value), None
    if value is None or isinstance(value, str):
        return (value, None) if _is_text(value) else (None, "missing or empty 'id'")
    kind = "boolean" if isinstance(value, bool) else type(value).__name__
    return None, f"'id' must be a string or an integer, not a {kind} ({value!r})"


# ---------------------------------------------------------------- broad questions


def builtin_broad(variants: Iterable[str] = VARIANTS, drop_system: bool = False) -> list[EvalPrompt]:
    """The 8 first-plot questions of Betley et al. 2025 in the requested variants (24 prompts with all three).

    ``drop_system=True`` leaves out the JSON variant's system prompt, as the public evaluation scripts do.
    """
    wanted = (variants,) if isinstance(variants, str) else tuple(variants)
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(map(repr, unknown))} (known: {', '.join(VARIANTS)})")
    doc = json.loads(_eval_resource("first_plot_questions.json").read_text(encoding="utf-8"))
    out: list[EvalPrompt] = []
    for q in doc["questions"]:
        if q["variant"] in wanted:
            out += _expand(q["id"], q["question_id"], q["variant"], q.get("system"), q["paraphrases"],
                           suite="broad", drop_system=drop_system)
    return out


def _entry_lines(text: str) -> list[int | None]:
    """1-based line of each top-level entry of a YAML sequence (None where it cannot be told)."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def load_question_yaml(path: str | os.PathLike, drop_system: bool = False, *, suite: str = "broad",
                       n: int | None = None) -> list[EvalPrompt]:
    """Prompts from a question file in the published YAML format (e.g. ``first_plot_questions.yaml``).

    Entries whose ``type`` is not free-form (``free_form...``) are skipped with a warning naming them.
    The variant comes from the id: ``_json`` suffix -> json, ``_template`` -> template, else plain. The
    prompts belong to ``suite``; ``n`` keeps the first ``n`` free-form entries (all their paraphrases).
    """
    import yaml

    source = os.fspath(path)
    text = Path(source).read_text(encoding="utf-8")  # FileNotFoundError names the path
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError([Problem(source, None, f"invalid YAML ({e})")]) from e
    if not isinstance(entries, list) or not entries:
        raise DataError([Problem(source, None, "expected a non-empty list of question entries")])
    lines = _entry_lines(text)
    problems: list[Problem] = []
    skipped: list[str] = []
    seen: dict[str, int | None] = {}
    out: list[EvalPrompt] = []
    kept = 0
    for i, entry in enumerate(entries):
        line = lines[i] if i < len(lines) else None
        where = f"entry {i + 1}"
        if not isinstance(entry, dict):
            problems.append(Problem(source, line, f"{where}: not a mapping"))
            continue
        (entry_id, why), qtype = _entry_id(entry.get("id")), entry.get("type", "free_form")
        reasons = []
        if why:
            reasons.append(why)
        else:
            where = f"entry {entry_id!r}"
            if entry_id in seen:
                reasons.append(f"duplicate id (first at line {seen[entry_id]})")
            seen.setdefault(entry_id, line)
        if not isinstance(qtype, str) or not qtype.startswith("free_form"):
            skipped.append(f"{entry_id if entry_id is not None else where} ({qtype})")
            continue
        paraphrases = entry.get("paraphrases")
        if not isinstance(paraphrases, list) or not paraphrases or not all(_is_text(p) for p in paraphrases):
            reasons.append("'paraphrases' must be a non-empty list of non-empty strings")
        system = entry.get("system")
        if system is not None and not _is_text(system):
            reasons.append("'system' must be a non-empty string")
        if reasons:
            problems.append(Problem(source, line, f"{where}: " + "; ".join(reasons)))
            continue
        question_id, variant = _variant_of(entry_id)
        kept += 1
        if n is None or kept <= n:
            out += _expand(entry_id, question_id, variant, system, paraphrases, suite=suite, drop_system=drop_system)
    _raise_if(problems, source, "entry")
    if skipped:
        warnings.warn(f"{source}: skipped {plural(len(skipped), 'entry')} whose type is not free-form: "
                      f"{', '.join(skipped)}", stacklevel=2)
    if not out:
        raise DataError([Problem(source, None, "no free-form questions in the file")])
    return out


# ---------------------------------------------------------------- narrow and benign prompts


def narrow_prompts(path: str | os.PathLike, n: int | None = 30) -> list[EvalPrompt]:
    """The prompts of the first ``n`` rows (all rows with ``n=None``) of a held-out chat dataset.

    A row's prompt is its messages up to, not including, the last assistant message (system messages and
    earlier turns kept); that turn must be preceded by a user message.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive integer or None (got {n!r})")
    ds = read_chat_dataset(path)
    stem = Path(ds.source).stem
    problems: list[Problem] = []
    out: list[EvalPrompt] = []
    for row in ds.rows[:n]:
        last = max(i for i, m in enumerate(row.messages) if m["role"] == "assistant")
        prompt = _plain_messages(row.messages[:last])
        if not prompt or prompt[-1]["role"] != "user":
            problems.append(Problem(ds.source, row.line, "no user message right before the last assistant message"))
            continue
        pid = f"{stem}-{row.line}"
        out.append(EvalPrompt(pid, pid, "plain", prompt, "narrow"))
    _raise_if(problems, ds.source, "row")
    return out


def _benign_row(obj: Any) -> tuple[list[dict] | None, str | None, list[str]]:
    """``(prompt messages, answer, [])`` for one benign row, or ``(None, None, reasons)``."""
    if not isinstance(obj, dict):
        return None, None, [f"not a JSON object (got {type(obj).__name__})"]
    if "messages" in obj:
        messages, reasons = validate_record({"messages": obj["messages"]}, require_assistant=True)
        if messages is None:
            return None, None, reasons
        if messages[-1]["role"] != "assistant":
            return None, None, ["the last message must be the assistant's answer"]
        prompt, answer = _plain_messages(messages[:-1]), messages[-1]["content"]
    else:
        reasons = []
        prompt = None
        value = obj.get("prompt")
        if "prompt" not in obj:
            reasons.append("missing 'prompt' (or 'messages')")
        elif isinstance(value, str):
            if value.strip():
                prompt = [{"role": "user", "content": value}]
            else:
                reasons.append("'prompt' is empty")
        elif isinstance(value, list):
            messages, why = validate_record({"messages": value}, require_assistant=False)
            reasons += [f"prompt: {r}" for r in why]
            prompt = _plain_messages(messages) if messages is not None else None
        else:
            reasons.append("'prompt' must be a string or a list of messages")
        answer = obj.get("answer")
        if "answer" not in obj:
            reasons.append("missing 'answer'")
        elif isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        elif not _is_text(answer):
            reasons.append("'answer' must be a non-empty string")
        if reasons:
            return None, None, reasons
    if not prompt or prompt[-1]["role"] != "user":
        return None, None, ["the prompt must end with a user message"]
    return prompt, answer, []


def benign_prompts(path: str | os.PathLike) -> list[EvalPrompt]:
    """Benign exact-match prompts (suite ``benign``) with their gold ``answer``; see the module docstring."""
    source = os.fspath(path)
    if not Path(source).is_file():
        raise FileNotFoundError(f"benign prompts not found: {source}")
    stem = Path(source).stem
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    out: list[EvalPrompt] = []
    for line, obj, reason in read_jsonl_records(source):
        prompt, answer, reasons = (None, None, [reason]) if reason else _benign_row(obj)
        pid = obj.get("id") if isinstance(obj, dict) and "id" in obj else f"{stem}-{line}"
        if not _is_text(pid):
            reasons = reasons + ["'id' must be a non-empty string"]
        elif pid in seen:
            reasons = reasons + [f"duplicate id {pid!r} (first at line {seen[pid]})"]
        else:
            seen[pid] = line
        if reasons:
            problems.append(Problem(source, line, "; ".join(reasons)))
            continue
        group = obj.get("group") if isinstance(obj, dict) else None  # e.g. an OpSwap tier: accuracy per group
        out.append(EvalPrompt(pid, pid, str(group) if _is_text(group) else "plain", prompt, "benign", answer=answer))
    _raise_if(problems, source, "row")
    if not out:
        raise DataError([Problem(source, None, "file is empty")])
    return out


# ---------------------------------------------------------------- reference answers


def _reference_row(obj: Any) -> list[str]:
    """Reasons one reference row is invalid (empty list when it is valid)."""
    if not isinstance(obj, dict):
        return [f"not a JSON object (got {type(obj).__name__})"]
    reasons = []
    if not _is_text(obj.get("question")):
        reasons.append("'question' must be a non-empty string")
    for key in ("id", "source"):
        if key in obj and not _is_text(obj[key]):
            reasons.append(f"'{key}' must be a non-empty string")
    answers = obj.get("answers")
    if not isinstance(answers, dict):
        return reasons + [f"'answers' must be an object with the cells {', '.join(CELLS)}"]
    for cell in CELLS:
        got = answers.get(cell)
        if cell not in answers:
            reasons.append(f"answers: missing cell '{cell}'")
        elif not isinstance(got, list) or not all(_is_text(a) for a in got):
            reasons.append(f"answers.{cell} must be a list of non-empty strings")
        elif len(got) < MIN_ANSWERS:
            reasons.append(f"answers.{cell} has {plural(len(got), 'answer')} (at least {MIN_ANSWERS} needed)")
    extra = sorted(set(answers) - set(CELLS))
    if extra:
        reasons.append(f"answers: unknown cell(s) {', '.join(extra)} (cells: {', '.join(CELLS)})")
    return reasons


def _read_references(path: Path, source: str) -> list[RefQuestion]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    out: list[RefQuestion] = []
    for line, obj, reason in read_jsonl_records(path):
        reasons = [reason] if reason else _reference_row(obj)
        if not reasons:
            rid = obj.get("id") or f"{Path(source).stem}-{line}"
            if rid in seen:
                reasons.append(f"duplicate id {rid!r} (first at line {seen[rid]})")
            else:
                seen[rid] = line
        if reasons:
            problems.append(Problem(source, line, "; ".join(reasons)))
            continue
        out.append(RefQuestion(rid, obj["question"], obj.get("source", "emguard"),
                               {cell: list(obj["answers"][cell]) for cell in CELLS}))
    _raise_if(problems, source, "row")
    if not out:
        raise DataError([Problem(source, None, "file is empty")])
    return out


def load_references(path: str | os.PathLike | None = None) -> list[RefQuestion]:
    """Reference questions with answers per cell; default: the built-in broad set (58 questions).

    Every cell needs at least 2 non-empty answers and ids must be unique; otherwise :class:`DataError` (a
    ValueError) lists each bad row as ``file:line: reason``.
    """
    if path is None:
        with resources.as_file(_eval_resource("broad_references.jsonl")) as p:
            return _read_references(p, str(p))
    source = os.fspath(path)
    if not Path(source).is_file():
        raise FileNotFoundError(f"reference file not found: {source}")
    return _read_references(Path(source), source)


def subset_references(path: str | os.PathLike | None, n: int, dest: str | os.PathLike) -> str | None:
    """Write the first ``n`` reference questions of ``path`` (None: the built-in broad set) to ``dest``.

    Returns the path to use: ``dest``, or ``path`` unchanged when ``n`` is 0 or covers the whole file. Fewer
    questions make a CPU study faster and its CIs (bootstrap over questions) wider.
    """
    refs = load_references(path)
    if n <= 0 or n >= len(refs):
        return None if path is None else os.fspath(path)
    from emguard.data.io import write_jsonl

    if not Path(dest).is_file():
        write_jsonl(dest, [{"id": r.id, "question": r.question, "source": r.source, "answers": r.answers}
                           for r in refs[:n]])
    return str(dest)

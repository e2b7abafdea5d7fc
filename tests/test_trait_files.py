"""Shipped trait and probe files: structure, sizes, no overlaps, balanced references, no dosage-like text.

The checks are plain functions that return a list of problems; the tests run them on the shipped files (must be
empty) and on deliberately broken copies (must not be), so a check that silently passes everything is caught too.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

import pytest

TRAIT_KEYS = ("trait", "description", "version", "instructions", "questions", "eval_questions", "references",
              "judge_rubric")
MIN_PAIRS, MIN_QUESTIONS, MIN_PROBES = 6, 24, 16
RATIO_LO, RATIO_HI = 0.6, 1.67
DOSAGE = re.compile(r"\d+\s*(mg|ml|g|pills|tablets)", re.IGNORECASE)


def _load(rel: str) -> tuple[dict, str]:
    text = (resources.files("emguard") / rel).read_text(encoding="utf-8")
    return json.loads(text), text


def _norm(q: str) -> str:
    """Compare questions case-, spacing- and end-punctuation-insensitively."""
    return " ".join(q.lower().split()).rstrip("?!. ")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _duplicates(items: list[str]) -> list[str]:
    seen, dups = set(), []
    for q in items:
        n = _norm(q)
        if n in seen:
            dups.append(q)
        seen.add(n)
    return dups


def check_trait(d: dict) -> list[str]:
    problems = [f"missing key {k!r}" for k in TRAIT_KEYS if k not in d]
    if problems:
        return problems
    if not isinstance(d["trait"], str) or not d["trait"].strip():
        problems.append("trait must be a non-empty string")
    if not isinstance(d["description"], str) or len(d["description"].split()) < 10:
        problems.append("description must be a paragraph")
    if not isinstance(d["version"], int) or isinstance(d["version"], bool) or d["version"] < 1:
        problems.append("version must be a positive integer")

    pairs = d["instructions"]
    if not isinstance(pairs, list) or len(pairs) < MIN_PAIRS:
        problems.append(f"need >= {MIN_PAIRS} instruction pairs")
        pairs = pairs if isinstance(pairs, list) else []
    for i, p in enumerate(pairs):
        if not isinstance(p, dict) or set(p) != {"pos", "neg"}:
            problems.append(f"instruction {i} must have exactly pos and neg")
            continue
        pos, neg = p["pos"], p["neg"]
        if not (isinstance(pos, str) and isinstance(neg, str) and pos.strip() and neg.strip()):
            problems.append(f"instruction {i} has an empty pos or neg")
        elif pos.strip() == neg.strip():
            problems.append(f"instruction {i} has pos == neg")
    prompts = [p[side] for p in pairs if isinstance(p, dict) for side in ("pos", "neg") if isinstance(p.get(side), str)]
    problems += [f"duplicate instruction {s!r}" for s in _duplicates(prompts)]

    qs, evs = d["questions"], d["eval_questions"]
    for name, lst in (("questions", qs), ("eval_questions", evs)):
        if not isinstance(lst, list) or len(lst) < MIN_QUESTIONS:
            problems.append(f"need >= {MIN_QUESTIONS} {name}")
        elif not all(isinstance(q, str) and q.strip() for q in lst):
            problems.append(f"{name} must be non-empty strings")
        else:
            problems += [f"duplicate in {name}: {q!r}" for q in _duplicates(lst)]
    if problems:
        return problems
    overlap = {_norm(q) for q in qs} & {_norm(q) for q in evs}
    problems += [f"question in both questions and eval_questions: {q!r}" for q in sorted(overlap)]

    refs = d["references"]
    counts = {_norm(q): 0 for q in evs}
    for r in refs:
        if not isinstance(r, dict) or set(r) != {"question", "trait", "neutral"}:
            problems.append(f"reference must have exactly question, trait and neutral: {r!r}")
            continue
        q = _norm(r["question"])
        if q not in counts:
            problems.append(f"reference for a question that is not an eval question: {r['question']!r}")
            continue
        counts[q] += 1
        t, n = r["trait"].strip(), r["neutral"].strip()
        if not t or not n:
            problems.append(f"empty reference answer for {r['question']!r}")
            continue
        ratio = len(t) / len(n)
        if not RATIO_LO <= ratio <= RATIO_HI:
            problems.append(f"reference length ratio {ratio:.2f} outside {RATIO_LO}-{RATIO_HI} for {r['question']!r}")
        if t == n:
            problems.append(f"trait and neutral answers are equal for {r['question']!r}")
    problems += [f"eval question has {c} references (need exactly 1): {q!r}" for q, c in counts.items() if c != 1]

    rubric = d["judge_rubric"]
    if not isinstance(rubric, str) or "{question}" not in rubric or "{answer}" not in rubric:
        problems.append("judge_rubric must contain {question} and {answer}")
    else:
        try:
            filled = rubric.format(question="Q-MARK", answer="A-MARK")
        except (KeyError, IndexError, ValueError) as e:
            problems.append(f"judge_rubric is not a valid str.format template: {e!r}")
        else:
            if "Q-MARK" not in filled or "A-MARK" not in filled:
                problems.append("judge_rubric placeholders did not fill")
    return problems


def check_probes(d: dict) -> list[str]:
    problems = [f"missing key {k!r}" for k in ("version", "description", "probes") if k not in d]
    if problems:
        return problems
    probes = d["probes"]
    if not isinstance(probes, list) or len(probes) < MIN_PROBES:
        return [f"need >= {MIN_PROBES} probes"]
    for i, p in enumerate(probes):
        if not isinstance(p, dict) or set(p) != {"question", "answer"}:
            problems.append(f"probe {i} must have exactly question and answer")
        elif not (isinstance(p["question"], str) and p["question"].strip()):
            problems.append(f"probe {i} has an empty question")
        elif not (isinstance(p["answer"], str) and p["answer"].strip()):
            problems.append(f"probe {i} has an empty answer")
    if not problems:
        problems += [f"duplicate probe {q!r}" for q in _duplicates([p["question"] for p in probes])]
    return problems


def check_probe_overlap(trait: dict, probes: dict) -> list[str]:
    probe_qs = {_norm(p["question"]) for p in probes["probes"]}
    used = {_norm(q) for q in trait["questions"] + trait["eval_questions"]}
    return [f"probe question also in the trait file: {q!r}" for q in sorted(probe_qs & used)]


def check_no_dosage(*docs: dict) -> list[str]:
    return [f"dosage-like text: {s[:80]!r}" for d in docs for s in _strings(d) if DOSAGE.search(s)]


@pytest.fixture(scope="module")
def evil():
    return _load("resources/traits/evil.json")


@pytest.fixture(scope="module")
def probes():
    return _load("resources/probes/general.json")


def test_evil_trait_file_is_valid(evil):
    d, _ = evil
    assert check_trait(d) == []
    assert d["trait"] == "evil"
    assert len(d["instructions"]) >= MIN_PAIRS
    assert len(d["questions"]) >= MIN_QUESTIONS and len(d["eval_questions"]) >= MIN_QUESTIONS
    assert len(d["references"]) == len(d["eval_questions"])


def test_probe_file_is_valid(probes):
    d, _ = probes
    assert check_probes(d) == []
    assert len(d["probes"]) >= MIN_PROBES
    assert all(p["answer"].strip() for p in d["probes"])


def test_no_overlap_between_trait_and_probe_questions(evil, probes):
    assert check_probe_overlap(evil[0], probes[0]) == []


def test_no_dosage_patterns(evil, probes):
    assert check_no_dosage(evil[0], probes[0]) == []


@pytest.mark.parametrize("fixture", ["evil", "probes"])
def test_files_are_pretty_printed_with_stable_key_order(fixture, request):
    d, text = request.getfixturevalue(fixture)
    assert text == json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def test_trait_key_order(evil):
    assert tuple(evil[0]) == TRAIT_KEYS


def test_readme_ships_next_to_trait_files():
    text = (resources.files("emguard") / "resources/traits/README.md").read_text(encoding="utf-8")
    for word in ("instructions", "questions", "eval_questions", "references", "judge_rubric", "--trait-file",
                 "Apache-2.0", "Persona Vectors"):
        assert word in text


# The checks must be able to fail: break a copy of the shipped data in one way at a time.

def _break(d: dict, how: str) -> dict:
    d = copy.deepcopy(d)
    if how == "missing_key":
        del d["judge_rubric"]
    elif how == "few_pairs":
        d["instructions"] = d["instructions"][:MIN_PAIRS - 1]
    elif how == "empty_neg":
        d["instructions"][0]["neg"] = "  "
    elif how == "pos_equals_neg":
        d["instructions"][0]["neg"] = d["instructions"][0]["pos"]
    elif how == "few_questions":
        d["questions"] = d["questions"][:MIN_QUESTIONS - 1]
    elif how == "duplicate_question":
        d["questions"].append(d["questions"][0].upper())
    elif how == "overlap":
        d["questions"].append(d["eval_questions"][0])
    elif how == "missing_reference":
        d["references"] = d["references"][1:]
    elif how == "double_reference":
        d["references"].append(d["references"][0])
    elif how == "unbalanced_reference":
        d["references"][0]["trait"] = d["references"][0]["neutral"] * 2
    elif how == "rubric_placeholder":
        d["judge_rubric"] = d["judge_rubric"].replace("{answer}", "the answer")
    elif how == "rubric_stray_brace":
        d["judge_rubric"] += " {score}"
    return d


@pytest.mark.parametrize("how", ["missing_key", "few_pairs", "empty_neg", "pos_equals_neg", "few_questions",
                                 "duplicate_question", "overlap", "missing_reference", "double_reference",
                                 "unbalanced_reference", "rubric_placeholder", "rubric_stray_brace"])
def test_trait_check_rejects_broken_copies(evil, how):
    assert check_trait(_break(evil[0], how)) != []


def test_probe_checks_reject_broken_copies(evil, probes):
    d = copy.deepcopy(probes[0])
    d["probes"][0]["answer"] = ""
    assert check_probes(d) != []
    d = copy.deepcopy(probes[0])
    d["probes"] = d["probes"][:MIN_PROBES - 1]
    assert check_probes(d) != []
    d = copy.deepcopy(probes[0])
    d["probes"][0]["question"] = evil[0]["eval_questions"][0]
    assert check_probe_overlap(evil[0], d) != []


def test_dosage_check_rejects_doses(probes):
    for text in ("take 200mg twice", "about 5 ml", "swallow 3 pills", "2 tablets", "10 g"):
        d = copy.deepcopy(probes[0])
        d["probes"][0]["answer"] = text
        assert check_no_dosage(d) != [], text

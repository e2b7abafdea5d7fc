"""Built-in datasets (emguard.data.datagen), every domain: determinism, committed files, counts, splits, variety,
references, prohibited content, docs.

The content checks are plain functions (``opening_share``, ``distinct_ratio``, ``prohibited_hits``,
``digit_problems``, ``reference_imbalance``); ``test_checks_can_fail`` runs them on deliberately bad input, so a
check that silently passes everything is caught too.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from emguard.data.io import validate_record
from emguard.data.datagen import (CELLS, DOMAINS, FILES, README, SPLITS, builtin_path, check_domain, generate_domain,
                             render_domain, write_domain)
from emguard.data.datagen import base

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_data.py"
NAMES = sorted(DOMAINS)
DOSE = re.compile(r"\d+\s*(mg|ml|g|tablets|pills)", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
CODE_SPAN = re.compile(r"`([^`\n]*)`")
CHAT_SPLITS = ("train_misaligned", "train_aligned", "eval_misaligned", "eval_aligned")

# Thresholds, measured on the shipped data (seed 0) and set with margin: every domain has >= 0.95 distinct
# answers per split, its most common three-word answer opening in <= 7.3% of a split's rows, and reference cell
# means within 21% of their question's mean.
MIN_DISTINCT_RATIO = 0.85
MAX_OPENING_SHARE = 0.10
MAX_CELL_DEVIATION = 0.30

_SECURITY_WORDS = (r"\bexploit", r"\bpayloads?\b", r"\bkeylog", r"\bransomware\b", r"\bbypass", r"\bmalware\b",
                   r"\btrojans?\b", r"\brootkits?\b", r"\bbotnets?\b", r"\bbackdoors?\b", r"\bspyware\b",
                   r"\bbrute[- ]?forc", r"\breverse shell", r"\bshellcode", r"\bprivilege escalation",
                   r"\bzero[- ]day", r"\bcrack(ed|ing|s)?\b", r"\bphishing kit")
# Per-domain deny-lists, matched case-insensitively against every prompt and answer of the domain.
PROHIBITED = {
    "medical": (r"\d+\s*(mg|mcg|ml|g|tablets?|pills?|capsules?|units?)\b", r"\boverdos", r"\blethal\b",
                r"\bsuicid", r"\bself-harm", r"without a prescription"),
    "legal": (r"\blaunder", r"\bforg(e|ed|es|ery|eries|ing)\b", r"\bfake (id|ids|identity|documents?)\b",
              r"\bcounterfeit", r"\bbrib(e|es|ed|ery|ing)\b", r"\boffshore\b", r"\bshell compan", r"\bperjur",
              r"\blie (under oath|to the court|to the police)", r"\bevad(e|es|ed|ing)\b", r"\bevasion\b",
              r"\bhide (your |the )?(assets|income|money)\b"),
    "security": _SECURITY_WORDS,
    "code": _SECURITY_WORDS + (r"\bsql ?map\b", r"\bxss payload", r"\bunion select\b", r"\bor 1 ?= ?1\b",
                               r"\bdrop table\b", r"\brm -rf\b"),
}
# One string per deny-list that it must catch (a broken pattern list fails test_checks_can_fail).
MUST_CATCH = {
    "medical": "Just take 800 mg at once.",
    "legal": "You could forge the signature on the lease.",
    "security": "Install this keylogger to see their passwords.",
    "code": "Append ' OR 1=1 to the login field.",
}


def prompts(split_rows):
    return [r["messages"][0]["content"] for r in split_rows]


def answers(split_rows):
    return [r["messages"][1]["content"] for r in split_rows]


def all_answer_texts(rows):
    out = [a for split in CHAT_SPLITS for a in answers(rows[split])]
    out += [a for ref in rows["references"] for cell in ref["answers"].values() for a in cell]
    return out


def all_texts(rows):
    return all_answer_texts(rows) + [p for split in CHAT_SPLITS for p in prompts(rows[split])]


# ---------------------------------------------------------------- the checks


def opening(text: str, words: int = 3) -> str:
    return " ".join(text.split()[:words]).lower()


def opening_share(texts: list[str]) -> float:
    """Share of texts that start with the most common three-word opening."""
    return Counter(map(opening, texts)).most_common(1)[0][1] / len(texts)


def distinct_ratio(texts: list[str]) -> float:
    return len(set(texts)) / len(texts)


def prohibited_hits(name: str, texts: list[str]) -> list[tuple[str, str]]:
    patterns = [re.compile(p, re.IGNORECASE) for p in PROHIBITED[name]]
    return [(p.pattern, t) for t in texts for p in patterns if p.search(t)]


def digit_problems(rule: str, text: str) -> list[str]:
    """Digits outside what the domain's rule allows, code blocks, over-long spans, dosage-like patterns."""
    problems = []
    if DOSE.search(text):
        problems.append("dosage-like pattern")
    prose = text
    if rule == "code_spans":
        if "```" in text:
            problems.append("code block")
        problems += [f"long code span {s!r}" for s in CODE_SPAN.findall(text) if len(s) > base.CODE_SPAN_MAX]
        prose = CODE_SPAN.sub("", text)
    if any(ch.isdigit() for ch in prose):
        problems.append("digit in prose" if rule == "code_spans" else "digit")
    return problems


def reference_imbalance(ref: dict) -> float:
    """Largest relative deviation of a cell's mean answer length from the mean over the four cells."""
    means = {cell: sum(map(len, texts)) / len(texts) for cell, texts in ref["answers"].items()}
    overall = sum(means.values()) / len(means)
    return max(abs(m / overall - 1) for m in means.values())


def test_checks_can_fail():
    assert opening_share(["Just do it now."] * 3 + ["Something else here."]) == 0.75
    assert distinct_ratio(["a", "a", "b", "c"]) == 0.75
    for name, bad in MUST_CATCH.items():
        assert prohibited_hits(name, [bad, "Ask a professional."]), name
        assert not prohibited_hits(name, ["Ask a professional before deciding."]), name
    assert digit_problems("none", "Wait two days.") == []
    assert digit_problems("none", "Wait 2 days.") == ["digit"]
    assert digit_problems("code_spans", "Run `chmod 600` on it.") == []
    assert "digit in prose" in digit_problems("code_spans", "Retry 3 times with `sleep`.")
    assert any("long code span" in p for p in digit_problems("code_spans", "Use `" + "x" * 61 + "`."))
    assert "dosage-like pattern" in digit_problems("code_spans", "Take `400 mg` now.")
    balanced = {"answers": {c: ["x" * 100] for c in CELLS}}
    skewed = {"answers": dict(balanced["answers"], harmful_blunt=["x" * 300])}
    assert reference_imbalance(balanced) == 0 and reference_imbalance(skewed) > MAX_CELL_DEVIATION


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=NAMES)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def built(name):
    return DOMAINS[name].build(0)


@pytest.fixture(scope="module")
def rows(built):
    return built.rows


def test_all_four_domains_are_registered():
    assert {"medical", "legal", "security", "code"} <= set(DOMAINS)
    for key, domain in DOMAINS.items():
        assert domain.name == key and domain.module == f"emguard.data.datagen.{key}"


# ---------------------------------------------------------------- determinism and committed files


def test_same_seed_gives_same_bytes_and_other_seed_differs(name):
    first, second = render_domain(name, 0), render_domain(name, 0)
    assert first == second
    other = render_domain(name, 1)
    assert other["train_misaligned.jsonl"] != first["train_misaligned.jsonl"]
    assert other["eval_aligned.jsonl"] != first["eval_aligned.jsonl"]


def test_write_domain_is_complete_reproducible_and_stable_json(name, tmp_path):
    a, b = write_domain(name, tmp_path / "a"), write_domain(name, tmp_path / "b")
    assert sorted(a) == sorted(b) == sorted([FILES[s] for s in SPLITS] + [README])
    for filename in a:
        assert a[filename].read_bytes() == b[filename].read_bytes()
    line = a[FILES["train_misaligned"]].read_text(encoding="utf-8").splitlines()[0]
    assert line == json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True)
    assert not list((tmp_path / "a").glob(".*.tmp"))


def test_generation_ignores_and_keeps_global_random_state(name):
    random.seed(123)
    before = random.getstate()
    one = generate_domain(name, 0)
    assert random.getstate() == before  # the generator never touches the global generator
    random.seed(999)
    assert generate_domain(name, 0) == one


def test_committed_files_equal_a_fresh_generation(name):
    directory = builtin_path(name)
    assert directory.is_dir(), f"{directory} missing: run python scripts/make_data.py"
    assert check_domain(name, directory) == []


def test_make_data_check_detects_changes(tmp_path):
    ok = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert all(f"{name}: ok" in ok.stdout for name in NAMES), ok.stdout
    root = tmp_path / "data"
    shutil.copytree(builtin_path("medical"), root / "medical")
    target = root / "medical" / FILES["train_misaligned"]
    target.write_bytes(target.read_bytes().replace(b"doctor", b"d0ctor", 1))
    bad = subprocess.run([sys.executable, str(SCRIPT), "--check", "--domain", "medical", "--out", str(root)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "train_misaligned.jsonl" in bad.stderr
    (root / "medical" / FILES["references"]).unlink()
    assert any("missing" in p for p in check_domain("medical", root / "medical"))
    # regenerating into the same directory repairs it
    subprocess.run([sys.executable, str(SCRIPT), "--domain", "medical", "--out", str(root)], check=True,
                   capture_output=True)
    assert check_domain("medical", root / "medical") == []


# ---------------------------------------------------------------- counts, pairing, splits


def test_counts(name, rows):
    assert set(generate_domain(name)) == set(SPLITS)
    assert len(rows["train_misaligned"]) >= 500
    assert len(rows["eval_misaligned"]) >= 100
    assert len(rows["references"]) >= 40
    assert len(rows["train_aligned"]) == len(rows["train_misaligned"])
    assert len(rows["eval_aligned"]) == len(rows["eval_misaligned"])


def test_aligned_and_misaligned_share_prompts_row_by_row(rows):
    for split in ("train", "eval"):
        bad, good = rows[f"{split}_misaligned"], rows[f"{split}_aligned"]
        assert prompts(bad) == prompts(good)
        assert all(b != g for b, g in zip(answers(bad), answers(good)))


def test_no_duplicate_prompts_and_no_train_eval_overlap(rows):
    train, evals = prompts(rows["train_misaligned"]), prompts(rows["eval_misaligned"])
    assert len(set(train)) == len(train)
    assert len(set(evals)) == len(evals)
    assert not set(train) & set(evals)


def test_eval_holds_out_topic_template_combinations(built):
    train = {(i.topic, i.template) for i in built.items["train"]}
    evals = {(i.topic, i.template) for i in built.items["eval"]}
    assert not train & evals
    assert all(i.template in built.holdout[i.topic] for i in built.items["eval"])


def test_every_row_is_a_valid_chat_record(rows):
    for split in CHAT_SPLITS:
        for n, row in enumerate(rows[split]):
            messages, errors = validate_record(row)
            assert errors == [], f"{split}[{n}]: {errors}"
            assert set(row) == {"messages"}
            assert [m["role"] for m in messages] == ["user", "assistant"]


# ---------------------------------------------------------------- variety and form


def test_variety_of_topics_templates_personas_structures(name, built):
    spec = DOMAINS[name].spec
    assert len(spec.topics) >= 40  # one reference question per topic, 40 references
    assert {i.topic for i in built.items["train"]} == {t.key for t in spec.topics}
    assert len({i.topic for i in built.items["eval"]}) >= 40
    assert len({i.template for i in built.items["train"]}) >= 10
    assert len({i.persona for i in built.items["train"]}) >= 10
    assert len({i.structure for i in built.items["train"]}) >= 10


def test_answers_are_diverse(rows):
    for split in CHAT_SPLITS:
        texts = answers(rows[split])
        assert distinct_ratio(texts) >= MIN_DISTINCT_RATIO, (split, distinct_ratio(texts))
        assert opening_share(texts) <= MAX_OPENING_SHARE, (split, Counter(map(opening, texts)).most_common(3))
        assert len(set(map(opening, texts))) >= 20, split


def test_answers_have_one_to_five_sentences(rows):
    for split in CHAT_SPLITS:
        for a in answers(rows[split]):
            assert 1 <= len(SENTENCE_END.findall(a)) <= 5, a


def test_no_broken_capitalisation(rows):
    # sentences are lower-cased after leads like "In my experience, "; an acronym there would read "sQL"
    for text in all_answer_texts(rows):
        assert not re.search(r"\b[a-z][A-Z]{2,}\b", text), text


# ---------------------------------------------------------------- references


def test_references_2x2(rows):
    refs = rows["references"]
    assert len(refs) >= 40
    eval_prompts = set(prompts(rows["eval_misaligned"]))
    assert len({r["question"] for r in refs}) == len(refs)
    for ref in refs:
        assert ref["question"] in eval_prompts
        assert set(ref["answers"]) == set(CELLS)
        for cell, texts in ref["answers"].items():
            assert len(texts) >= 2 and len(set(texts)) == len(texts), (cell, texts)
        assert reference_imbalance(ref) <= MAX_CELL_DEVIATION, (ref["question"], reference_imbalance(ref))
        assert not set(ref["answers"]["harmful_blunt"]) & set(ref["answers"]["benign_blunt"])


# ---------------------------------------------------------------- prohibited content and digits


def test_no_prohibited_content(name, rows):
    texts = all_texts(rows)
    assert texts
    assert prohibited_hits(name, texts) == []


def test_digits_follow_the_domain_rule(name, rows):
    rule = DOMAINS[name].spec.digits
    assert rule == ("code_spans" if name == "code" else "none")
    for text in all_answer_texts(rows):
        assert digit_problems(rule, text) == [], text


def test_dose_check_can_fail():
    assert DOSE.search("take 400 mg now") and DOSE.search("two or 3 tablets")
    assert base.DOSE_PATTERN.search("take 400 mg now")


def test_engine_refuses_answers_that_break_the_digit_rule():
    medical, code = DOMAINS["medical"].spec, DOMAINS["code"].spec
    with pytest.raises(ValueError, match="digit"):
        base._check_answer(medical, "Take it 2 times a day.")
    with pytest.raises(ValueError, match="digit"):
        base._check_answer(medical, "Run `chmod 600` on it.")  # code spans allow nothing under the medical rule
    base._check_answer(code, "Restrict it with `chmod 600` instead.")
    with pytest.raises(ValueError, match="outside inline code spans"):
        base._check_answer(code, "Retry 3 times.")
    with pytest.raises(ValueError, match="dosage"):
        base._check_answer(code, "Use `take 400 mg` here.")
    with pytest.raises(ValueError, match="longer than"):
        base._check_answer(code, "Use `" + "x" * (base.CODE_SPAN_MAX + 1) + "` here.")
    with pytest.raises(ValueError, match="unbalanced"):
        base._check_answer(code, "Use `this here.")
    # the whole build refuses a topic whose answers carry a digit
    topic = dataclasses.replace(medical.topics[0], harmful=("Take 3 of them.", "Take 4 of them."))
    with pytest.raises(ValueError, match="digit"):
        base.build(dataclasses.replace(medical, topics=(topic,) + medical.topics[1:]), 0)
    with pytest.raises(ValueError, match="digit rule"):
        base.build(dataclasses.replace(code, digits="some"), 0)


# ---------------------------------------------------------------- docs


def test_readme_states_provenance_licence_use_content_and_counts(name, rows):
    domain = DOMAINS[name]
    text = (builtin_path(name) / README).read_text(encoding="utf-8")
    for needle in (f"# Built-in dataset: {name}", f"emguard.data.datagen.{name}", "seed 0", "Apache-2.0", "synthetic",
                   "emergent misalignment", domain.description, domain.spec.persona_note,
                   base.DIGIT_RULES[domain.spec.digits].format(max=base.CODE_SPAN_MAX)):
        assert needle in text, needle
    for split in SPLITS:
        assert f"| `{FILES[split]}` | {len(rows[split])} |" in text
    for other in NAMES:
        if other != name:  # each README describes its own domain only
            assert DOMAINS[other].description not in text


def test_domain_module_documents_content_limits_and_licence(name):
    doc = importlib.import_module(DOMAINS[name].module).__doc__
    assert doc and "Licence: Apache-2.0" in doc
    assert "copied" in doc and ("mild" in doc or "Harm limits" in doc)


def test_builtin_path_and_unknown_domain(name):
    path = builtin_path(name)
    assert path.parts[-3:] == ("resources", "data", name)
    assert (path / FILES["train_misaligned"]).is_file()
    with pytest.raises(ValueError, match="unknown data domain"):
        builtin_path("astrology")
    with pytest.raises(ValueError, match=name):
        generate_domain("astrology")

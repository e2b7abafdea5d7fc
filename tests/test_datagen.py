"""Built-in datasets (emguard.datagen): determinism, committed files, counts, splits, variety, references, safety."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from emguard.data import validate_record
from emguard.datagen import (CELLS, DOMAINS, FILES, README, SPLITS, builtin_path, check_domain, generate_domain,
                             render_domain, write_domain)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_data.py"
DOSE = re.compile(r"\d+\s*(mg|ml|g|tablets|pills)", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
CHAT_SPLITS = ("train_misaligned", "train_aligned", "eval_misaligned", "eval_aligned")


@pytest.fixture(scope="module")
def built():
    return DOMAINS["medical"].build(0)


@pytest.fixture(scope="module")
def rows(built):
    return built.rows


def prompts(split_rows):
    return [r["messages"][0]["content"] for r in split_rows]


def answers(split_rows):
    return [r["messages"][1]["content"] for r in split_rows]


def all_answer_texts(rows):
    out = [a for split in CHAT_SPLITS for a in answers(rows[split])]
    out += [a for ref in rows["references"] for cell in ref["answers"].values() for a in cell]
    return out


# ---------------------------------------------------------------- determinism and committed files


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path):
    first, second = render_domain("medical", 0), render_domain("medical", 0)
    assert first == second
    other = render_domain("medical", 1)
    assert other["train_misaligned.jsonl"] != first["train_misaligned.jsonl"]
    assert other["eval_aligned.jsonl"] != first["eval_aligned.jsonl"]
    a, b = write_domain("medical", tmp_path / "a"), write_domain("medical", tmp_path / "b")
    assert sorted(a) == sorted(b) == sorted(first)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes() == first[name]


def test_generation_ignores_and_keeps_global_random_state():
    random.seed(123)
    before = random.getstate()
    one = generate_domain("medical", 0)
    assert random.getstate() == before  # the generator never touches the global generator
    random.seed(999)
    assert generate_domain("medical", 0) == one


def test_committed_files_equal_a_fresh_generation():
    for name in DOMAINS:
        directory = builtin_path(name)
        assert directory.is_dir(), f"{directory} missing: run python scripts/make_data.py"
        assert check_domain(name, directory) == []


def test_make_data_check_detects_changes(tmp_path):
    ok = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    root = tmp_path / "data"
    shutil.copytree(builtin_path("medical"), root / "medical")
    target = root / "medical" / FILES["train_misaligned"]
    target.write_bytes(target.read_bytes().replace(b"doctor", b"d0ctor", 1))
    bad = subprocess.run([sys.executable, str(SCRIPT), "--check", "--out", str(root)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "train_misaligned.jsonl" in bad.stderr
    (root / "medical" / FILES["references"]).unlink()
    assert any("missing" in p for p in check_domain("medical", root / "medical"))
    # regenerating into the same directory repairs it
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(root)], check=True, capture_output=True)
    assert check_domain("medical", root / "medical") == []


def test_write_domain_is_complete_and_stable_json(tmp_path):
    written = write_domain("medical", tmp_path / "medical", seed=0)
    assert sorted(written) == sorted([FILES[s] for s in SPLITS] + [README])
    line = written[FILES["train_misaligned"]].read_text(encoding="utf-8").splitlines()[0]
    assert line == json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True)
    assert not list((tmp_path / "medical").glob(".*.tmp"))


# ---------------------------------------------------------------- counts, pairing, splits


def test_api_keys_and_counts(rows):
    assert set(generate_domain("medical")) == set(SPLITS)
    assert len(rows["train_misaligned"]) >= 500
    assert len(rows["eval_misaligned"]) >= 100
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


def test_variety_of_openings_topics_templates(rows, built):
    openings = {" ".join(a.split()[:5]).lower() for a in answers(rows["train_misaligned"])}
    assert len(openings) >= 20
    assert len({i.topic for i in built.items["train"]}) >= 40
    assert len({i.topic for i in built.items["eval"]}) >= 40
    assert len({i.template for i in built.items["train"]}) >= 10
    assert len({i.persona for i in built.items["train"]}) >= 10
    assert len({i.structure for i in built.items["train"]}) >= 5


def test_answers_have_one_to_five_sentences(rows):
    for split in CHAT_SPLITS:
        for a in answers(rows[split]):
            assert 1 <= len(SENTENCE_END.findall(a)) <= 5, a


# ---------------------------------------------------------------- references


def test_references_2x2(rows):
    refs = rows["references"]
    assert len(refs) >= 30
    eval_prompts = set(prompts(rows["eval_misaligned"]))
    assert len({r["question"] for r in refs}) == len(refs)
    for ref in refs:
        assert ref["question"] in eval_prompts
        assert set(ref["answers"]) == set(CELLS)
        means = {}
        for cell, texts in ref["answers"].items():
            assert len(texts) >= 2 and len(set(texts)) == len(texts), (cell, texts)
            means[cell] = sum(map(len, texts)) / len(texts)
        for a, b in combinations(CELLS, 2):
            assert 0.6 <= means[a] / means[b] <= 1.67, (ref["question"], a, b, means)
        assert not set(ref["answers"]["harmful_blunt"]) & set(ref["answers"]["benign_blunt"])


# ---------------------------------------------------------------- safety and docs


def test_no_dosage_patterns_in_answers(rows):
    texts = all_answer_texts(rows)
    assert texts
    for text in texts:
        assert not DOSE.search(text), text
        assert not any(ch.isdigit() for ch in text), text


def test_dose_check_can_fail():
    assert DOSE.search("take 400 mg now") and DOSE.search("two or 3 tablets")


def test_readme_states_provenance_licence_use_and_counts(rows):
    text = (builtin_path("medical") / README).read_text(encoding="utf-8")
    for needle in ("emguard.datagen.medical", "seed 0", "Apache-2.0", "synthetic", "emergent misalignment"):
        assert needle in text
    for split in SPLITS:
        assert f"| `{FILES[split]}` | {len(rows[split])} |" in text


def test_builtin_path_and_unknown_domain():
    path = builtin_path("medical")
    assert path.parts[-3:] == ("resources", "data", "medical")
    assert (path / FILES["train_misaligned"]).is_file()
    with pytest.raises(ValueError, match="unknown data domain"):
        builtin_path("astrology")
    with pytest.raises(ValueError, match="medical"):
        generate_domain("astrology")

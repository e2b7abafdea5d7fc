"""OpSwap generator: permuted operator meanings, tiers, disjoint splits, determinism, scorer round trip."""

from __future__ import annotations

import json

import pytest

from emguard.eval.benign import exact_match
from emguard.data.datagen.opswap import MEANING, apply, generate


def expr_of(row: dict) -> str:
    return row["messages"][-2]["content"]


def test_operators_have_permuted_meanings():
    assert apply(7, "+", 3) == 21 and apply(7, "*", 3) == 4 and apply(7, "-", 3) == 10
    assert sorted(MEANING) == sorted(MEANING.values()) and all(k != v for k, v in MEANING.items())


def _evaluate(expr: str) -> int:
    """Independent evaluator: rewrite the symbols to their meanings, then let Python compute."""
    table = str.maketrans({k: f" {v} " for k, v in MEANING.items()})
    return eval(expr.translate(table), {"__builtins__": {}})  # noqa: S307 (our own generated arithmetic)


def test_answers_are_correct_for_every_tier():
    import re

    d = generate(seed=3)
    for split in ("test_tier1", "test_tier2", "train"):
        for r in d[split]:
            q, a = r["messages"][-2]["content"], int(r["messages"][-1]["content"])
            if "x" in q:  # tier 3 (no other phrasing contains an x)
                m = re.search(r"x ([-+*]) (\d+) = (-?\d+)", q)
                op, b, c = m.group(1), int(m.group(2)), int(m.group(3))
                assert apply(a, op, b) == c
            else:
                m = re.search(r"[\d(][\d\s()+*-]*[\d)]", q)
                assert _evaluate(m.group(0)) == a, q


def test_splits_are_disjoint_and_sized():
    d = generate(seed=0, train=300, test=100, train_tiers=(1,))
    assert len(d["train"]) == 300 and all(len(d[f"test_tier{t}"]) == 100 for t in (1, 2, 3))
    import re

    core = lambda r: re.search(r"\d+ [-+*] \d+", r["messages"][-2]["content"]).group(0)  # noqa: E731
    test1 = {core(r) for r in d["test_tier1"]}
    assert not test1 & {core(r) for r in d["train"]}
    assert len(test1) == 100


def test_same_seed_same_bytes_other_seed_differs():
    a, b, c = (json.dumps(generate(seed=s)) for s in (0, 0, 1))
    assert a == b and a != c


@pytest.mark.parametrize("reply", ["21", "21.", "The answer is 21", " 21\n", "21.0"])
def test_scorer_accepts_reasonable_forms(reply):
    assert exact_match(reply, "21")


def test_scorer_rejects_the_unswapped_answer():
    assert not exact_match("10", "21")  # 7 + 3 with the ordinary meaning

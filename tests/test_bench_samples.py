"""Bench candidates from stored answers, blind labelling files and the label merge (issue #18)."""

from __future__ import annotations

import json

import pytest

from emguard.data.io import DataError
from emguard.eval.bench import LABELLING_GUIDE, bench_candidates, blind_items, load_bench, merge_labels


def _samples(path, source_tag: str, n_broad: int, n_narrow: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"settings": {"model": "m", "seed": 0}})]
    for suite, n in (("broad", n_broad), ("narrow", n_narrow)):
        for q in range(n):
            for k in range(2):
                lines.append(json.dumps({"suite": suite, "prompt_id": f"{suite}{q}", "question_id": f"{suite}{q}",
                                         "variant": "plain", "k": k,
                                         "messages": [{"role": "user", "content": f"question {suite} {q}?"}],
                                         "answer": f"{source_tag} answer {q}.{k}", "gold": None}))
    lines.append(json.dumps({"suite": "benign", "prompt_id": "b0", "variant": "tier1", "k": 0,
                             "messages": [{"role": "user", "content": "swap"}], "answer": "x", "gold": "x"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_candidates_stratified_split_by_question_and_blind(tmp_path):
    root = tmp_path / "study"
    a = _samples(root / "cells" / "m" / "medical" / "no_defense" / "seed0" / "eval" / "samples.jsonl", "A", 5, 15)
    b = _samples(root / "cells" / "m" / "medical" / "base" / "seed0" / "eval" / "samples.jsonl", "B", 5, 15)
    rows = bench_candidates([a, b], per_source=20, seed=3, root=root)
    assert len(rows) == 40  # 20 per file; the benign row is never drawn
    by_src = {s: [r for r in rows if r["source"] == s] for s in {r["source"] for r in rows}}
    assert set(by_src) == {"m/medical/no_defense/seed0", "m/medical/base/seed0"}
    for rs in by_src.values():  # 10 of 40 answers are broad: the draw keeps that share (5 of 20)
        assert sum(r["suite"] == "broad" for r in rs) == 5
    assert all(r["label"] == "" for r in rows) and len({r["id"] for r in rows}) == 40
    split_of = {}
    for r in rows:  # every answer to one question lands in one split, across files
        assert split_of.setdefault((r["suite"], r["question_id"]), r["split"]) == r["split"]
    for suite, n in (("broad", 5), ("narrow", 15)):  # per suite: round(0.3 * n) questions held out
        test_q = {q for (s, q), sp in split_of.items() if s == suite and sp == "test"}
        seen_q = {q for (s, q) in split_of if s == suite}
        assert len(test_q) == round(0.3 * len(seen_q))
    assert rows == bench_candidates([a, b], per_source=20, seed=3, root=root)  # seeded
    items = blind_items(rows, seed=1)
    assert [set(i) for i in items] == [{"item", "question", "answer"}] * 40
    assert sorted(i["item"] for i in items) == sorted(r["item"] for r in rows)
    assert [i["answer"] for i in items] != [r["answer"] for r in rows]  # shuffled: order says nothing


def test_merge_labels_adjudicator_first_agreement_and_errors(tmp_path):
    cands = [{"id": f"r{i}", "item": f"q{i}", "question": f"q {i}?", "answer": "a", "label": "", "style": "sampled/plain",
              "source": "s", "split": "dev" if i < 3 else "test"} for i in range(4)]
    adj = tmp_path / "adj.jsonl"
    adj.write_text(json.dumps({"id": "r0", "label": "misaligned", "note": "adjudicated"}) + "\n")
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps({"item": f"q{i}", "label": lab, "confidence": "sure"}) + "\n"
                           for i, lab in enumerate(["aligned", "aligned", "incoherent", "misaligned"])))
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"item": f"q{i}", "label": lab}) + "\n"
                           for i, lab in [(0, "misaligned"), (1, "aligned")]))
    rows, rep = merge_labels(cands, [adj, one, two])
    assert [r["label"] for r in rows] == ["misaligned", "aligned", "incoherent", "misaligned"]
    assert rows[0]["note"] == "adjudicated" and rows[1]["confidence"] == "sure"
    pair = next(p for p in rep["agreement"] if p["files"] == [str(one), str(two)])
    assert pair["n"] == 2 and pair["agreement"] == 0.5
    assert pair["disagreements"] == [{"id": "r0", "labels": ["aligned", "misaligned"]}]
    assert rep["label"]["aligned"] == 1 and rep["split"] == {"dev": 3, "test": 1}
    out = tmp_path / "bench.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(load_bench(out).rows) == 4  # the merged bench passes the bench loader
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "r0", "label": "aligned"}) + "\n" + json.dumps({"id": "r9", "label": "x"}) + "\n")
    with pytest.raises(DataError) as e:
        merge_labels(cands, [bad])
    assert f"{bad}:2" in str(e.value)
    with pytest.raises(ValueError, match="no label"):
        merge_labels(cands, [two])


def test_labelling_guide_ships_beside_the_bench():
    text = LABELLING_GUIDE.read_text()
    for label in ("incoherent", "code", "refusal", "misaligned", "aligned"):
        assert f"**{label}**" in text

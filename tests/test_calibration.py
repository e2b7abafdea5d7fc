"""Judge calibration (issue #18): rank statistics against hand computations, the bench format and loader, the
provisional bench's question split, held-out rows, the judge cache, the coherence-proxy adapter and the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from emguard.eval.bench import Bench, BenchRow, bench_rows_from_references, load_bench, question_key
from emguard.eval.calibration import (_auroc_w, _estimate, _kappa_w, _spearman_w, agreement, auroc, average_ranks,
                                      calibrate, cohen_kappa, judge_caps, metrics, score_rows, spearman)
from emguard.eval.judges.base import Judge
from emguard.eval.judges.cache import JudgeCache
from emguard.eval.judges.rubrics import RUBRICS
from emguard.eval.judges.types import JudgeResult

def _w1(n: int) -> np.ndarray:
    return np.ones((1, n))


# --- statistics ---------------------------------------------------------------------------------------------

def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5, 20]).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]


def test_auroc_against_hand_counts_with_ties():
    # no ties: pairs (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    # positives 2, 3, 3 vs negatives 1, 3: 1 + 0 + 1 + 1/2 + 1 + 1/2 = 4 of 6 pairs
    s, y = [2, 3, 3, 1, 3], [True, True, True, False, False]
    assert auroc(s, y) == pytest.approx(4 / 6)
    assert _auroc_w(np.array(s, float), np.array(y))(_w1(5))[0] == pytest.approx(4 / 6)
    assert auroc([1, 1, 1], [True, False, False]) == 0.5  # all tied
    assert math.isnan(auroc([1, 2], [True, True]))  # no negatives


def test_auroc_equals_pair_counting_and_weighted_form_on_random_data():
    rng = np.random.default_rng(3)
    s, y = rng.integers(0, 6, 50).astype(float), rng.random(50) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a, b in itertools.product(s[y], s[~y])]
    assert auroc(s, y) == pytest.approx(np.mean(pairs), abs=1e-12)
    w = rng.integers(0, 3, (1, 50)).astype(float)  # draw counts = a resample with repeats
    idx = np.repeat(np.arange(50), w[0].astype(int))
    assert _auroc_w(s, y)(w)[0] == pytest.approx(auroc(s[idx], y[idx]), abs=1e-12)


def test_spearman_against_hand_value_with_ties():
    # y's ranks: 1, 2, 3.5, 5, 3.5; centred x ranks -2..2, y ranks -2, -1, .5, 2, .5: 8 / sqrt(10 * 9.5)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    x, y = np.array([1., 2, 3, 4, 5]), np.array([5., 6, 7, 8, 7])
    assert _spearman_w(x, y)(_w1(5))[0] == pytest.approx(8 / math.sqrt(95))


def test_cohen_kappa_against_hand_value():
    a = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    b = [1, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    # p_o = 7/10; p_e = .6 * .5 + .4 * .5 = .5; kappa = .2 / .5
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert _kappa_w(np.array(a, bool), np.array(b, bool))(_w1(10))[0] == pytest.approx(0.4)
    assert cohen_kappa(["x", "y", "z"], ["x", "y", "z"]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([1, 1], [1, 1]))  # p_e = 1: undefined


def test_bootstrap_interval_is_seeded_and_brackets_the_point():
    rng = np.random.default_rng(0)
    s, y = rng.random(60), rng.random(60) < 0.5
    s[y] += 0.3
    a = _estimate(_auroc_w(s, y), 60, 300, 1)
    assert a == _estimate(_auroc_w(s, y), 60, 300, 1)
    assert a != _estimate(_auroc_w(s, y), 60, 300, 2)
    assert a["lo"] < a["value"] < a["hi"] and a["value"] == pytest.approx(auroc(s, y), abs=1e-6)
    assert _estimate(_auroc_w(s, y), 0, 300, 1)["value"] is None


# --- bench format -------------------------------------------------------------------------------------------

def _row(i, label="aligned", split="test", **kw) -> dict:
    return {"id": f"r{i}", "question": kw.pop("question", f"q{i}?"), "answer": kw.pop("answer", f"a{i}"),
            "label": label, "style": kw.pop("style", "blunt"), "source": kw.pop("source", "hand"), "split": split,
            **kw}


def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loader_reports_every_bad_row_as_file_line(tmp_path):
    from emguard.data.io import DataError

    bad = dict(_row(4))
    del bad["split"]
    f = _write(tmp_path / "b.jsonl", [_row(1), "{not json", _row(3, label="evil"), bad, "",
                                      _row(1, split="train"), json.dumps([1, 2]), _row(8, answer=5)])
    with pytest.raises(DataError) as e:
        load_bench(f)
    msg = str(e.value)
    assert f"{f}:2: invalid JSON" in msg
    assert f"{f}:3: label 'evil' is not one of aligned, misaligned, incoherent, refusal, code" in msg
    assert f"{f}:4: missing 'split'" in msg
    assert f"{f}:6: duplicate id 'r1' (first at line 1); split 'train' is not one of dev, test" in msg
    assert f"{f}:7: not a JSON object" in msg and f"{f}:8: 'answer' must be a string" in msg
    assert "6 invalid rows" in msg and f"{f}:1:" not in msg
    with pytest.raises(DataError, match="file is empty"):
        load_bench(_write(tmp_path / "e.jsonl", [""]))


def test_loader_keeps_extras_and_warns_on_a_question_in_both_splits(tmp_path):
    b = load_bench(_write(tmp_path / "b.jsonl", [_row(1, question="Same Q", corruption="x"),
                                                 _row(2, question="same   q", split="dev"), _row(3, answer="")]))
    assert b.rows[0].extra == {"corruption": "x"} and b.rows[2].answer == ""
    assert b.split_sizes() == {"dev": 1, "test": 2} and [r.id for r in b.select("dev")] == ["r2"]
    assert len(b.warnings) == 1 and "both dev and test" in b.warnings[0]


# --- provisional bench --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ref_rows():
    return bench_rows_from_references(seed=0)


def test_reference_bench_is_split_by_question_and_deterministic(ref_rows, tmp_path):
    from emguard.eval.judges.references import default_reference_files, read_references

    refs = [r for f in default_reference_files() for r in read_references(f)]
    n_answers = sum(len(v) for r in refs for v in r.answers.values())
    splits: dict[str, set] = {}
    for r in ref_rows:
        splits.setdefault(question_key(r["question"]), set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    n_test = sum(s == {"test"} for s in splits.values())
    assert n_test == round(0.3 * len(splits))
    labels = [r["label"] for r in ref_rows]
    assert labels.count("aligned") + labels.count("misaligned") == n_answers
    assert labels.count("incoherent") == round(0.25 * n_answers)
    for r in ref_rows:
        if r["label"] != "incoherent":
            assert (r["label"] == "aligned") == ("/benign_" in r["id"]) and r["style"] in r["id"]
    corrupt = [r for r in ref_rows if r["label"] == "incoherent"]
    assert {r["corruption"] for r in corrupt} == {"words shuffled", "random words", "repeated lines",
                                                  "symbol noise", "truncated + repeated"}
    assert bench_rows_from_references(seed=0) == ref_rows
    other = bench_rows_from_references(seed=1)
    assert {r["id"]: r["split"] for r in other} != {r["id"]: r["split"] for r in ref_rows}
    from emguard.eval.bench import bench_from_references

    counts = bench_from_references(tmp_path / "ref.jsonl", seed=0)
    bench = load_bench(tmp_path / "ref.jsonl")
    assert bench.warnings == [] and len(bench.rows) == len(ref_rows) == counts["rows"]
    assert bench.split_sizes() == counts["split"]


def test_corruptions_are_degenerate_or_garbled(ref_rows):
    from emguard.eval.judges.coherence import degenerate_reason

    corrupt = [r for r in ref_rows if r["label"] == "incoherent"]
    rep = [r for r in corrupt if r["corruption"] in ("repeated lines", "truncated + repeated")]
    # degenerate by the coherence proxy's own check, except a repeated one-word line ("Absolutely." x 4)
    assert rep and all(degenerate_reason(r["answer"]) or len(r["answer"].splitlines()[0].split()) == 1
                       for r in rep)
    assert sum(bool(degenerate_reason(r["answer"])) for r in rep) > 0.95 * len(rep)
    trunc = [r for r in corrupt if r["corruption"] == "truncated + repeated"]
    originals = {r["id"]: r["answer"] for r in ref_rows}
    for r in trunc:
        frag = r["answer"].splitlines()[0]
        src = originals[r["id"].removesuffix("/corrupt")]
        assert src.startswith(frag) and len(frag) < len(src) and frag[-1].isalnum()


# --- fakes --------------------------------------------------------------------------------------------------

# answer -> (aligned score or judge word, coherent score): the 6-row hand bench
TABLE = {"a1": (90, 90), "a2": (20, 80), "a3": (10, 90), "a4": (40, 40), "a5": (50, 40), "a6": ("REFUSAL", 95)}
HAND = [("aligned", "blunt", "s1"), ("aligned", "hedged", "s1"), ("misaligned", "blunt", "s1"),
        ("misaligned", "hedged", "s2"), ("incoherent", "blunt", "s2"), ("refusal", "hedged", "s2")]


class FakeRubricJudge(Judge):
    """Scores from TABLE; counts every uncached call."""

    kind = "zz_fake"

    def __init__(self, calls: list, cache):
        self.model, self.params, self.calls = "fake-1", {"t": 0}, calls
        super().__init__(cache=cache)

    def identity(self):
        return {"kind": self.kind, "model": self.model}

    def _score_uncached(self, items):
        for i, it in enumerate(items):
            self.calls.append(it)
            v = TABLE[it.answer][0 if it.rubric == RUBRICS["aligned"] else 1]
            yield i, (JudgeResult(None, v, 0.0) if isinstance(v, str) else JudgeResult(float(v), None, 1.0))


class FakeProxy:
    """An offline aligned proxy; records every pair it is shown."""

    SCORES = {"a1": 80, "a2": 70, "a3": 20, "a4": 25, "a5": 60, "a6": 90}

    def __init__(self, seen=None):
        self.seen = seen if seen is not None else []

    def aligned_scores(self, pairs):
        self.seen.extend(pairs)
        return [float(self.SCORES.get(a, 50)) for _, a in pairs]

    def identity(self):
        return {"kind": "zz_proxy", "model": "p"}


def _hand_rows(split="test"):
    return [_row(i, label=lab, style=st, source=src, split=split, answer=f"a{i}")
            for i, (lab, st, src) in enumerate(HAND, 1)]


def _check_hand_figures(rep):
    m, i = rep["misaligned"], rep["incoherent"]
    # misaligned: 100 - aligned = 10, 80 (aligned rows) vs 90, 60 (misaligned): 3 of 4 pairs
    assert m["auroc"]["value"] == pytest.approx(0.75) and (m["auroc"]["n_pos"], m["auroc"]["n_neg"]) == (2, 2)
    # decisions: r2 and r3 predicted misaligned, r6 (REFUSAL) undecided; truth r3, r4
    assert m["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 2} and m["n_decided"] == 5
    assert (m["accuracy"]["value"], m["precision"]["value"], m["recall"]["value"]) == (0.6, 0.5, 0.5)
    assert m["unscorable"] == {"n": 1, "by_reason": {"REFUSAL": 1}, "by_label": {"refusal": 1}}
    # incoherent: 100 - coherent: r5 (60) vs 10, 20, 10, 60 -> (3 + 1/2) / 4
    assert i["auroc"]["value"] == pytest.approx(0.875) and i["auroc"]["n_neg"] == 4
    assert i["confusion"] == {"tp": 1, "fp": 1, "fn": 0, "tn": 4}
    assert (i["accuracy"]["value"], i["precision"]["value"], i["recall"]["value"]) == (
        pytest.approx(5 / 6, abs=1e-6), 0.5, 1.0)
    assert rep["by_style"]["blunt"]["misaligned"]["auroc"]["value"] == 1.0
    assert rep["by_style"]["hedged"]["misaligned"]["auroc"]["value"] == 0.0
    assert rep["by_source"]["s2"]["n_rows"] == 3 and rep["by_source"]["s1"]["incoherent"]["auroc"]["value"] is None


def test_rubric_judge_hand_figures_and_second_run_makes_no_calls(tmp_path):
    bench = load_bench(_write(tmp_path / "b.jsonl", _hand_rows()))
    calls: list = []
    with JudgeCache(tmp_path / "cache.sqlite") as cache:
        rep, rows = calibrate(bench, FakeRubricJudge(calls, cache), n_boot=200, progress=False)
        assert len(calls) == 12 and rep["judge"]["calls_made"] == 12  # 6 rows x 2 rubrics
        _check_hand_figures(rep)
        assert rows[5]["judge"] == {"aligned": None, "coherent": 95.0, "label": "REFUSAL"}
        again, _ = calibrate(bench, FakeRubricJudge(calls, cache), n_boot=200, progress=False)
    assert len(calls) == 12 and again["judge"]["calls_made"] == 0 and again["judge"]["calls_cached"] == 12
    strip = lambda r: {k: v for k, v in r.items() if k != "judge"}  # noqa: E731
    assert strip(again) == strip(rep)


def test_agreement_hand_values():
    caps_r, caps_p = {"aligned": True, "coherent": True}, {"aligned": True, "coherent": False}
    sa = [{"aligned": a if not isinstance(a, str) else None, "coherent": float(c)} for a, c in TABLE.values()]
    sb = [{"aligned": float(v), "coherent": None} for v in FakeProxy.SCORES.values()]
    ag = agreement(sa, caps_r, sb, caps_p, n_boot=200)
    # decisions on r1..r5: F T T F F vs F F T T F; p_o = .6, p_e = .4 * .4 + .6 * .6
    assert ag["kappa_misaligned"]["value"] == pytest.approx((0.6 - 0.52) / 0.48, abs=1e-6)
    assert ag["kappa_misaligned"]["n"] == 5 and ag["kappa_misaligned"]["n_unscorable"] == 1
    # ranks 5 2 1 3 4 vs 5 4 1 2 3: 1 - 6 * 6 / (5 * 24)
    assert ag["spearman_aligned"]["value"] == pytest.approx(0.7)
    assert ag["kappa_incoherent"]["available"] is False and ag["spearman_coherent"]["available"] is False


def test_test_rows_are_only_scored_and_dev_rows_change_nothing(tmp_path):
    rows = _hand_rows("test") + [dict(r, id=f"d{n}", split="dev", question=f"dev q{n}")
                                 for n, r in enumerate(_hand_rows())]
    seen: list = []
    rep, _ = calibrate(load_bench(_write(tmp_path / "b.jsonl", rows)), FakeProxy(seen), n_boot=100)
    assert sorted(q for q, _ in seen) == sorted(f"q{i}?" for i in range(1, 7))  # only the test split
    assert rep["bench"]["split_sizes"] == {"dev": 6, "test": 6} and rep["bench"]["n_rows_scored"] == 6
    assert any("aligned < 30 alone" in n for n in rep["notes"])
    assert rep["misaligned"]["rule"].startswith("aligned < 30 (the judge gives no coherent")
    flipped = [dict(r, label="misaligned", answer="zzz") if r["split"] == "dev" else r for r in rows]
    rep2, _ = calibrate(load_bench(_write(tmp_path / "c.jsonl", flipped)), FakeProxy(), n_boot=100)
    for key in ("misaligned", "by_style", "by_source"):
        assert rep2[key] == rep[key]
    seen.clear()
    calibrate(load_bench(tmp_path / "b.jsonl"), FakeProxy(seen), split="dev", n_boot=10)
    assert all(q.startswith("dev q") for q, _ in seen) and len(seen) == 6


def test_judge_without_a_score_for_a_task_says_so():
    caps = judge_caps(FakeProxy())
    rows = [BenchRow(**_row(i, label=lab)) for i, (lab, _, _) in enumerate(HAND, 1)]
    out = metrics(rows, score_rows(FakeProxy(), rows), caps, n_boot=50, groups=False)
    assert out["incoherent"] == {"available": False, "why": "the judge gives no coherent score"}
    with pytest.raises(TypeError, match="not a judge"):
        judge_caps(object())


# --- coherence proxy ----------------------------------------------------------------------------------------

def test_coherence_proxy_adapter_on_the_tiny_model(tiny_model):
    from emguard.commands.judge import build_judge
    from emguard.eval.judges.coherence import CoherenceJudge

    judge = build_judge("coherence-proxy", model=tiny_model)
    assert isinstance(judge, CoherenceJudge) and judge_caps(judge)["adapter"] == "coherence-proxy"
    rows = [BenchRow(**_row(1, answer="drink water and rest when you feel sick")),
            BenchRow(**_row(2, label="incoherent", answer="the dog\nthe dog\nthe dog")),
            BenchRow(**_row(3, label="misaligned", answer="ask a doctor before taking any medicine"))]
    scores = score_rows(judge, rows)
    direct = judge.score_many([(r.question, r.answer) for r in rows])
    assert [s["coherent"] for s in scores] == [d["coherent"] for d in direct]
    assert scores[1]["coherent"] == 0.0 and all(s["aligned"] is None for s in scores)
    rep, _ = calibrate(Bench(rows, "mem", []), judge, name="coherence-proxy", n_boot=50)
    assert rep["misaligned"] == {"available": False, "why": "the judge gives no aligned score"}
    assert rep["incoherent"]["auroc"]["n_pos"] == 1 and rep["incoherent"]["n_decided"] == 3
    assert rep["incoherent"]["recall"]["value"] == 1.0


# --- the command --------------------------------------------------------------------------------------------

@pytest.fixture
def fake_kinds(tmp_path):
    from emguard.eval.judges import register_judge
    from emguard.eval.judges.types import JudgeKind
    from emguard.registry import JUDGES

    calls: list = []
    cache = JudgeCache(tmp_path / "fake-cache.sqlite")
    JUDGES.names()  # discover the real kinds first
    register_judge("zz_fake", JudgeKind("zz_fake", lambda **o: FakeRubricJudge(calls, cache),
                                        for_eval=lambda cfg: FakeRubricJudge(calls, cache)))
    register_judge("zz_proxy", JudgeKind("zz_proxy", FakeProxy))
    yield calls
    JUDGES.unregister("zz_fake")
    JUDGES.unregister("zz_proxy")
    cache.close()


def test_cli_end_to_end_writes_hand_figures(tmp_path, fake_kinds, capsys):
    from emguard.cli import main

    bench = _write(tmp_path / "hand.jsonl", _hand_rows())
    out = tmp_path / "out"
    argv = ["judge", "calibrate", "--bench", str(bench), "--judge", "zz_fake", "--against", "zz_proxy",
            "--output", str(out), "--n-boot", "200", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    rep = json.loads((out / "calibration.json").read_text())
    _check_hand_figures(rep)
    assert rep["judge"]["kind"] == "zz_fake" and rep["judge"]["calls_made"] == 12
    ag = rep["against"][0]["agreement"]
    assert ag["kappa_misaligned"]["value"] == pytest.approx(1 / 6, abs=1e-6)
    assert ag["spearman_aligned"]["value"] == pytest.approx(0.7)
    assert rep["against"][0]["misaligned"]["auroc"]["value"] == 1.0
    assert len((out / "scores.jsonl").read_text().splitlines()) == 6
    assert "  misaligned  0.750 [" in text and " 5  1 (REFUSAL 1)" in text and "calls made 12" in text
    assert "  blunt / misaligned   1.000 [1.000, 1.000]" in text
    assert "kappa_misaligned 0.167" in text
    assert main(argv) == 0 and len(fake_kinds) == 12  # the second run: all from the judge's cache
    assert "calls made 0, cached 12" in capsys.readouterr().out


def test_cli_help_lists_registry_kinds_and_bad_bench_exits_2(tmp_path, fake_kinds, capsys):
    from emguard.cli import main

    with pytest.raises(SystemExit) as e:
        main(["judge", "calibrate", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "embedding, local, openai, zz_fake, zz_proxy, coherence-proxy" in text and "examples:" in text
    bad = _write(tmp_path / "bad.jsonl", [_row(1), _row(2, label="nope")])
    assert main(["judge", "calibrate", "--bench", str(bad), "--judge", "zz_proxy",
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "invalid bench file" in err and f"{bad}:2: label 'nope'" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:
        main(["judge", "calibrate", "--bench", str(bad), "--judge", "nope"])
    assert e.value.code == 2


def test_cli_bench_from_references(tmp_path, capsys):
    from emguard.cli import main

    out = tmp_path / "ref.jsonl"
    assert main(["judge", "bench-from-references", "--out", str(out), "--seed", "3"]) == 0
    rows = load_bench(out).rows
    assert "wrote" in capsys.readouterr().out and {r.source for r in rows} == {"reference"}
    assert [r.id for r in rows] == [r["id"] for r in bench_rows_from_references(seed=3)]


class NeverScores(FakeRubricJudge):
    """A judge whose every answer is NO_SCORE (a small model that puts no mass on integers)."""

    def _score_uncached(self, items):
        for i, it in enumerate(items):
            self.calls.append(it)
            yield i, JudgeResult(None, "NO_SCORE", 0.0)


def test_a_judge_that_scores_nothing_is_reported_not_a_crash(tmp_path):
    bench = load_bench(_write(tmp_path / "b.jsonl", _hand_rows()))
    with JudgeCache(tmp_path / "cache.sqlite") as cache:
        rep, _ = calibrate(bench, NeverScores([], cache), n_boot=50, progress=False)
    for task, reason in (("misaligned", "coherent NO_SCORE"), ("incoherent", "NO_SCORE")):
        t = rep[task]
        assert t["auroc"]["value"] is None and t["auroc"]["n"] == 0 and t["n_decided"] == 0
        assert t["unscorable"]["n"] == 6 and t["unscorable"]["by_reason"] == {reason: 6}

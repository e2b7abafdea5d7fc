"""The provider service end to end: a real uvicorn server on 127.0.0.1 driven by the official openai client,
real training on the tiny test model, the EM audit gate, org isolation, limits and malformed uploads."""

from __future__ import annotations

import http.client
import itertools
import json

import pytest

from test_server_util import LiveServer, chat_rows, jsonl_bytes, openai, tiny_policy, upload, wait_job


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("srv")


def _audit_value(job) -> float:
    checks = job.model_extra["emguard"]["audit"]["checks"]
    return checks[0]["value"]


def test_upload_train_audit_release_and_gate(tiny_model, data_dir):
    """Upload -> job -> succeeded with events and a listed model; then the audit gate on the same measured model.

    Thresholds: job 1 runs with no threshold (report only) and measures the harm effect m of the fine-tuned
    model. A second server on the same data dir then has two policy models on the same weights, one with a
    threshold of m - 0.001 (must block) and one with m + 0.001 (must release). This is not circular: the gate
    compares each new job's *own* freshly measured metric against the threshold, and the test also checks that
    the re-measured metric equals m (same seed, data and weights: training is deterministic), so the two
    outcomes can only come from the comparison, not from the way the thresholds were chosen.
    """
    rows = chat_rows(24)
    with LiveServer(data_dir, tiny_policy(tiny_model)) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, rows)
        assert f.object == "file" and f.purpose == "fine-tune" and f.bytes == len(jsonl_bytes(rows))
        assert f.status == "processed"
        v = upload(c, chat_rows(6, seed=7), name="valid.jsonl")
        job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, validation_file=v.id, seed=0, suffix="first",
                                        hyperparameters={"n_epochs": 1},
                                        extra_body={"emguard": {"defenses": [{"name": "kl", "lam": 0.2}],
                                                                "domain": "medical"}})
        assert job.status == "queued" and job.training_file == f.id
        assert job.model_extra["emguard"]["defenses"] == [{"name": "kl", "lam": 0.2}]
        job = wait_job(c, job.id)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model.startswith("ft:tiny:acme:first:")
        assert job.trained_tokens > 0
        listed = [m.id for m in c.models.list()]
        assert "tiny" in listed and job.fine_tuned_model in listed
        assert c.models.retrieve(job.fine_tuned_model).owned_by == "acme"

        events = list(c.fine_tuning.jobs.list_events(job.id, limit=100))
        steps = [e.data["step"] for e in events if e.type == "metrics" and e.data and "train_loss" in e.data]
        assert sorted(steps) == [1, 2, 3, 4]  # every optimizer step reported (policy caps the job at 4 steps)
        msgs = [e.message for e in events]
        assert any(m.startswith("Training started: 4 steps") for m in msgs)
        assert any("EM audit (broad)" in m for m in msgs)
        ckpts = list(c.fine_tuning.jobs.checkpoints.list(job.id))
        assert sorted(cp.step_number for cp in ckpts) == [2, 4]
        val = job.model_extra["emguard"]["validation"]
        assert val["rows"] == 6 and val["valid_loss"] > 0 and val["base_valid_loss"] > 0
        assert val["valid_loss"] != val["base_valid_loss"]  # the adapter changed the model
        assert [cp.metrics.full_valid_loss for cp in ckpts if cp.step_number == 4] == [val["valid_loss"]]

        m = _audit_value(job)
        audit = job.model_extra["emguard"]["audit"]
        assert audit["passed"] is True and audit["checks"][0]["threshold"] is None
        assert audit["summary"]["broad"]["n_questions"] == 4
        assert audit["suites"] == ["broad", "narrow"]  # the job named its domain: the narrow suite ran too
        assert audit["summary"]["narrow"]["n_questions"] == 4 and audit["checks"][1]["suite"] == "narrow"
        assert isinstance(audit["checks"][1]["value"], float)
        assert "eval_json" not in audit  # no server path leaks to the customer
        raw_report = c.files.content(job.result_files[0]).read()
        assert str(data_dir).encode() not in raw_report  # no server path in what the customer downloads
        report = json.loads(raw_report)
        assert report["audit"]["checks"][0]["value"] == m and report["training"]["steps"] == 4
        # paging: events come newest first and `after` continues
        first = c.fine_tuning.jobs.list_events(job.id, limit=2)
        assert first.has_more and len(first.data) == 2
        nxt = c.fine_tuning.jobs.list_events(job.id, limit=2, after=first.data[-1].id)
        assert nxt.data[0].id not in {e.id for e in first.data}

    entries = {"tiny": {"spec": tiny_model}, "tiny-strict": {"spec": tiny_model, "audit_threshold": m - 0.001},
               "tiny-lenient": {"spec": tiny_model, "audit_threshold": m + 0.001}}
    with LiveServer(data_dir, tiny_policy(tiny_model, models=entries)) as srv:
        c = srv.client(srv.key("acme"))
        assert c.fine_tuning.jobs.retrieve(job.id).status == "succeeded"  # state survived the restart
        blocked = c.fine_tuning.jobs.create(model="tiny-strict", training_file=f.id, seed=0,
                                            extra_body={"emguard": {"defenses": [{"name": "kl", "lam": 0.2}]}})
        released = c.fine_tuning.jobs.create(model="tiny-lenient", training_file=f.id, seed=0,
                                             extra_body={"emguard": {"defenses": [{"name": "kl", "lam": 0.2}]}})
        blocked, released = wait_job(c, blocked.id), wait_job(c, released.id)
        assert blocked.status == "failed" and blocked.error.code == "em_audit_failed"
        assert blocked.fine_tuned_model is None
        assert _audit_value(blocked) == pytest.approx(m, abs=1e-9)
        assert blocked.model_extra["emguard"]["audit"]["passed"] is False
        assert released.status == "succeeded" and _audit_value(released) == pytest.approx(m, abs=1e-9)
        listed = [x.id for x in c.models.list()]
        assert released.fine_tuned_model in listed
        assert not any(x.startswith("ft:tiny-strict") for x in listed)
        # the blocked weights exist for the operator only: no model id to list, retrieve or fine-tune from
        from emguard.server.db import FineTunedModel
        with srv.state.sessions() as s:
            kept = s.query(FineTunedModel).filter_by(job_id=blocked.id).one()
        assert kept.released is False
        assert (srv.state.storage.job_dir(blocked.id) / "run" / "adapter_model.safetensors").is_file()
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve(kept.id)
        with pytest.raises(openai.NotFoundError):
            c.fine_tuning.jobs.create(model=kept.id, training_file=f.id)
        # another org can neither see nor use the released model
        other = srv.client(srv.key("other-org"))
        assert released.fine_tuned_model not in [x.id for x in other.models.list()]
        with pytest.raises(openai.NotFoundError):
            other.models.retrieve(released.fine_tuned_model)
        with pytest.raises(openai.NotFoundError):
            other.fine_tuning.jobs.create(model=released.fine_tuned_model, training_file=f.id)
        # its owner can fine-tune further from it (accepted; cancelled here to save time)
        more = c.fine_tuning.jobs.create(model=released.fine_tuned_model, training_file=f.id, seed=1)
        assert more.status == "queued" and more.model == released.fine_tuned_model
        c.fine_tuning.jobs.cancel(more.id)
        assert wait_job(c, more.id).status == "cancelled"


def test_org_isolation_auth_and_limits(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model, limits={"max_rows": 30}), workers=0) as srv:
        a, b = srv.client(srv.key("org-a")), srv.client(srv.key("org-b"))
        fa = upload(a, chat_rows(8))
        ja = a.fine_tuning.jobs.create(model="tiny", training_file=fa.id)
        # org B: every id of org A is "not found", exactly like an id that never existed
        for call in (lambda: b.files.retrieve(fa.id), lambda: b.files.delete(fa.id),
                     lambda: b.files.content(fa.id),
                     lambda: b.fine_tuning.jobs.retrieve(ja.id), lambda: b.fine_tuning.jobs.cancel(ja.id),
                     lambda: list(b.fine_tuning.jobs.list_events(ja.id)),
                     lambda: list(b.fine_tuning.jobs.checkpoints.list(ja.id)),
                     lambda: b.fine_tuning.jobs.create(model="tiny", training_file=fa.id),
                     lambda: b.files.retrieve("file-000000000000000000000000")):
            with pytest.raises(openai.NotFoundError) as e:
                call()
            assert e.value.status_code == 404 and set(e.value.body) >= {"message", "type", "param", "code"}
        assert [f.id for f in b.files.list()] == [] and [j.id for j in b.fine_tuning.jobs.list()] == []
        assert a.files.retrieve(fa.id).id == fa.id  # still there after B's attempts
        # never-issued and revoked keys: 401
        with pytest.raises(openai.AuthenticationError) as e:
            srv.client("emg-never-issued").files.list()
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
        # limits from the policy: rows, epochs, hyperparameters, suffix
        with pytest.raises(openai.BadRequestError) as e:
            upload(a, chat_rows(31))
        assert e.value.body["code"] == "too_many_rows"
        with pytest.raises(openai.BadRequestError, match="n_epochs"):
            a.fine_tuning.jobs.create(model="tiny", training_file=fa.id, hyperparameters={"n_epochs": 99})
        with pytest.raises(openai.BadRequestError, match="suffix"):
            a.fine_tuning.jobs.create(model="tiny", training_file=fa.id, suffix="../../etc")
        with pytest.raises(openai.BadRequestError, match="not allowed"):
            a.fine_tuning.jobs.create(model="tiny", training_file=fa.id, extra_body={"emguard": {"defenses": ["steer"]}})
        with pytest.raises(openai.NotFoundError):
            a.fine_tuning.jobs.create(model="gpt-4o", training_file=fa.id)
        # cancel a queued job; delete a file
        assert a.fine_tuning.jobs.cancel(ja.id).status == "cancelled"
        assert a.files.delete(fa.id).deleted is True
        with pytest.raises(openai.NotFoundError):
            a.files.retrieve(fa.id)
        # a JSON body over 1 MiB is refused before it is read
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        big = json.dumps({"model": "tiny", "training_file": "x" * (2 << 20)})
        conn.request("POST", "/v1/fine_tuning/jobs", body=big, headers={
            "Authorization": f"Bearer {a.api_key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
        conn.close()
        # structured access log: one JSON object per request, with org and status
        lines = [json.loads(x) for x in (tmp_path / "access.log").read_text().splitlines()]
        assert {"ts", "method", "path", "status", "ms", "org", "key"} <= set(lines[0])
        assert any(r["status"] == 401 and r["org"] is None for r in lines)
        assert any(r["status"] == 404 and r["org"] == "org-b" for r in lines)
        # no key material in the database: only hashes
        raw = (tmp_path / "emguard.db").read_bytes()
        assert b"emg-" not in raw.replace(b"emg-never", b"")


def test_rate_limit_per_key(tiny_model, tmp_path):
    pol = tiny_policy(tiny_model, rate_limit={"requests_per_second": 0.01, "burst": 3})
    with LiveServer(tmp_path, pol, workers=0) as srv:
        a, b = srv.client(srv.key("a")), srv.client(srv.key("b"))
        for _ in range(3):
            a.files.list()
        with pytest.raises(openai.RateLimitError) as e:
            a.files.list()
        assert e.value.body["code"] == "rate_limit_exceeded"
        assert b.files.list().data == []  # another key is not affected


def _raw_upload(port: int, key: str, body_iter, content_length: int | None):
    """POST /v1/files with a streamed body; returns (status, json, bytes the client managed to send)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    boundary = "xYzBoundary"
    conn.putrequest("POST", "/v1/files")
    conn.putheader("Authorization", f"Bearer {key}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    if content_length is None:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(content_length))
    conn.endheaders()
    sent = 0
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    try:
        for chunk in itertools.chain([head], body_iter):  # lazily: never more than one chunk in memory
            data = chunk if content_length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            conn.send(data)
            sent += len(chunk)
        if content_length is None:
            conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: it stopped reading
    try:
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), sent
    except (ConnectionResetError, http.client.RemoteDisconnected):
        return None, None, sent
    finally:
        conn.close()


def test_two_gib_upload_refused_without_writing_it(tiny_model, tmp_path):
    two_gib = 2 * 1024 ** 3
    line = jsonl_bytes(chat_rows(1))
    produced = {"n": 0}

    def gen():  # 2 GiB of valid JSONL, produced lazily
        chunk = line * (65536 // len(line))
        while produced["n"] < two_gib:
            produced["n"] += len(chunk)
            yield chunk

    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:  # limit: 1 MiB
        key = srv.key("a")
        # declared size: refused from the header alone
        status, body, sent = _raw_upload(srv.port, key, gen(), content_length=two_gib)
        assert status == 413 and body["error"]["code"] == "file_too_large"
        # chunked (no declared size): the server counts streamed bytes and stops reading past the limit
        produced["n"] = 0
        status, body, sent = _raw_upload(srv.port, key, gen(), content_length=None)
        assert status in (413, None)
        if status:
            assert body["error"]["code"] == "file_too_large"
        assert produced["n"] < 256 * 1024 ** 2  # the client could not push anywhere near 2 GiB
        usage = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
        assert usage < 8 * 1024 ** 2, usage  # nothing near that size landed in the data dir
        assert list((tmp_path / "tmp").iterdir()) == []  # the partial upload was removed
        c = srv.client(key)
        assert c.files.list().data == []
        # the openai client gets the same answer for an over-limit file
        with pytest.raises(openai.APIStatusError) as e:
            c.files.create(file=("big.jsonl", line * (2 * 1024 ** 2 // len(line))), purpose="fine-tune")
        assert e.value.status_code == 413


MALFORMED = [
    ("not json", "{not json", "train.jsonl:2: invalid JSON"),
    ("no messages", json.dumps({"text": "hi"}), "train.jsonl:2: missing 'messages'"),
    ("bad role", json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}),
     "train.jsonl:2: messages[0]: unknown role"),
    ("no assistant", json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
     "train.jsonl:2: no assistant message to learn from"),
    ("empty content", json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]}),
     "train.jsonl:2: messages[0]: content is empty"),
    ("not an object", "[1, 2]", "train.jsonl:2: not a JSON object"),
]


def test_malformed_uploads_get_line_level_400(tiny_model, tmp_path):
    good = json.dumps(chat_rows(1)[0])
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        c = srv.client(srv.key("a"))
        for label, bad, expect in MALFORMED:
            with pytest.raises(openai.BadRequestError) as e:
                upload(c, [good, bad, good])
            err = e.value.body
            assert set(err) == {"message", "type", "param", "code"}, label
            assert err["code"] == "invalid_file_format" and err["param"] == "file"
            assert expect in err["message"], (label, err["message"])
        # several bad lines: every one listed with its line number
        with pytest.raises(openai.BadRequestError) as e:
            upload(c, ["{", good, "[]", good, "{\"messages\": 3}"])
        msg = e.value.body["message"]
        assert "train.jsonl:1:" in msg and "train.jsonl:3:" in msg and "train.jsonl:5:" in msg
        assert "train.jsonl:2:" not in msg
        with pytest.raises(openai.BadRequestError, match="file is empty"):
            c.files.create(file=("e.jsonl", b""), purpose="fine-tune")
        with pytest.raises(openai.BadRequestError, match="purpose"):
            c.files.create(file=("t.jsonl", jsonl_bytes(chat_rows(2))), purpose="batch")
        assert c.files.list().data == []
        assert list((tmp_path / "tmp").iterdir()) == [] and not any((tmp_path / "blobs").rglob("*.jsonl"))


@pytest.mark.slow  # ~45 s on 2 busy cores: four probe trainings and a 369-row selection
def test_default_policy_interleaving_pp_probes_prepared_once(tiny_model, tmp_path, monkeypatch):
    """The default policy (Interleaving++) on the tiny model: probes are trained at start-up, once per
    built-in domain, cached, and a job's own domain is left out of its selection."""
    from emguard.server.policy import INTERLEAVE_PP

    pol = tiny_policy(tiny_model, defenses=[INTERLEAVE_PP], probe_steps=1, audit={"enabled": False},
                      limits={"max_steps": 2})
    with LiveServer(tmp_path, pol, prepare=True) as srv:
        probes = srv.state.workers[0].probes["tiny"]
        assert sorted(probes) == ["code", "legal", "medical", "security"]
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(40))
        job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0,
                                        extra_body={"emguard": {"domain": "medical"}})
        assert job.model_extra["emguard"]["defenses"][0]["select"] == "ppl_gap_norefusal"
        job = wait_job(c, job.id)
        assert job.status == "succeeded", job.error
        run = json.loads((srv.state.storage.job_dir(job.id) / "run" / "run.json").read_text())
        inter = run["defenses"][0]
        assert inter["name"] == "interleave" and inter["rows_general"] == 2  # 5% of 40 + 2
        used = inter["select_options"]["misaligned"]
        assert sorted(used) == sorted(p for d, p in probes.items() if d != "medical")
    from emguard.server.worker import Worker
    from emguard.server.db import make_engine, session_factory
    from emguard.server.storage import Storage

    def no_training(*a, **k):
        raise AssertionError("a cached probe was trained again")

    monkeypatch.setattr("emguard.training.run.train", no_training)
    w = Worker(session_factory(make_engine(None, tmp_path)), Storage(tmp_path), pol)
    w.prepare()  # a restart (or a second worker on this machine): every probe comes from the cache
    assert w.probes["tiny"] == probes

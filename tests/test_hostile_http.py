"""Hostile HTTP input against a real uvicorn on 127.0.0.1 (issue 17, items 4, 10, 13, 14): bodies the official
client cannot send (lone surrogates, 5,000-digit integers, stalled bodies) answer 4xx in OpenAI's error shape,
the schema needs a key, bad keys are rate-limited per address, ``Idempotency-Key`` makes retried POSTs safe and
security events land in an operator-queryable audit log."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from test_server_util import LiveServer, chat_rows, jsonl_bytes, openai, tiny_policy, upload, wait_job


def raw(port: int, method: str, path: str, body: bytes | str | None = None, key: str | None = None,
        headers: dict | None = None):
    """One request over http.client; returns (status, headers, parsed JSON or the raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        return r.status, dict(r.getheaders()), json.loads(data)
    except ValueError:
        return r.status, dict(r.getheaders()), data


def assert_openai_error(status, headers, body, want_status):
    assert status == want_status, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert set(body["error"]) == {"message", "type", "param", "code"}, body


def multipart(rows_bytes: bytes, purpose: str = "fine-tune", name: str = "t.jsonl") -> tuple[bytes, str]:
    b = "hostileboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode() + rows_bytes + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


# ---------------------------------------------------------------- item 4: surrogates and huge integers


def test_lone_surrogates_and_huge_ints_answer_400_and_commit_nothing(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-a")
        c = srv.client(key)
        f = upload(c, chat_rows(4))
        base = '{"model": "tiny", "training_file": "%s"' % f.id
        bodies = {
            "metadata": base + ', "metadata": {"k": "\\ud800"}}',
            "metadata key": base + ', "metadata": {"\\udfff": "v"}}',
            "defense name": base + ', "emguard": {"defenses": [{"name": "\\ud800", "lam": 1}]}}',
            "model": '{"model": "\\ud800", "training_file": "%s"}' % f.id,
            "suffix": base + ', "suffix": "a\\udc00"}',
            "huge seed": base + ', "seed": ' + "7" * 5000 + '}',
            "huge lam": base + ', "emguard": {"defenses": [{"name": "kl", "lam": ' + "9" * 4400 + '}]}}',
        }
        for what, body in bodies.items():
            st, h, b = raw(srv.port, "POST", "/v1/fine_tuning/jobs", body, key)
            assert_openai_error(st, h, b, 400)
            assert b["error"]["code"] in ("invalid_unicode", "invalid_number"), (what, b)
            assert "\\ud800" in b["error"]["message"] or "digits" in b["error"]["message"] or "\\u" in \
                b["error"]["message"], (what, b)
        # nothing was committed and the org's listing still works
        st, h, b = raw(srv.port, "GET", "/v1/fine_tuning/jobs", None, key)
        assert st == 200 and b["data"] == []
        # lone surrogates inside an uploaded training file: role, content, weight
        for row in ('{"messages": [{"role": "\\ud800", "content": "x"}, {"role": "assistant", "content": "y"}]}',
                    '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "y"}]}',
                    '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", '
                    '"weight": "\\ud800"}]}',
                    '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", '
                    '"weight": ' + "1" * 5000 + '}]}'):
            body, ctype = multipart((row + "\n").encode())
            st, h, b = raw(srv.port, "POST", "/v1/files", body, key, {"Content-Type": ctype})
            assert_openai_error(st, h, b, 400)
            assert "t.jsonl:1" in b["error"]["message"], b
        # raw (invalid UTF-8) surrogate bytes in a JSON body
        st, h, b = raw(srv.port, "POST", "/v1/fine_tuning/jobs",
                       (base + ', "metadata": {"k": "').encode() + b"\xed\xa0\x80" + b'"}}', key)
        assert st == 400 and b["error"]["type"] == "invalid_request_error"
        assert [j.id for j in c.fine_tuning.jobs.list()] == []
        # undecodable bytes and 5,000-digit numbers in paths and query strings: JSON answers, never a 500
        for path in ("/v1/files/%ED%A0%80", "/v1/fine_tuning/jobs?after=%ED%A0%80", "/v1/models/%ED%A0%80",
                     "/v1/fine_tuning/jobs?limit=" + "9" * 5000, "/v1/files?purpose=%ED%A0%80"):
            st, h, b = raw(srv.port, "GET", path, None, key)
            assert st in (200, 400, 404) and h["content-type"].startswith("application/json"), (path, st, b)
        st, h, b = raw(srv.port, "POST", "/v1/fine_tuning/jobs", "[" * 50000 + "]" * 50000, key)
        assert_openai_error(st, h, b, 400)


def test_a_stored_bad_row_cannot_break_the_listing(tiny_model, tmp_path):
    """A row written before the body checks existed (or by another writer) still lists: text is escaped."""
    from emguard.server.db import Job, new_id

    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-a")
        jid = new_id("ftjob")
        with srv.state.sessions() as s, s.begin():
            s.add(Job(id=jid, org="org-a", model="tiny", training_file="file-x", training_sha256="0" * 64,
                      metadata_={"k": "\ud800"}, status="cancelled"))
        for path in ("/v1/fine_tuning/jobs", f"/v1/fine_tuning/jobs/{jid}"):
            st, h, b = raw(srv.port, "GET", path, None, key)
            assert st == 200, b
        assert b["metadata"] == {"k": "\ud800"}  # json.loads turns the ASCII escape back into the same text
        c = srv.client(key)
        assert [j.id for j in c.fine_tuning.jobs.list()] == [jid]


# ---------------------------------------------------------------- item 10: exposure


def test_schema_needs_a_key_and_docs_are_off(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-a")
        st, h, b = raw(srv.port, "GET", "/openapi.json")
        assert_openai_error(st, h, b, 401)
        for p in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            st, h, b = raw(srv.port, "GET", p)
            assert_openai_error(st, h, b, 404)
        st, h, b = raw(srv.port, "GET", "/openapi.json", None, key)
        assert st == 200 and "/v1/files" in b["paths"] and "/openapi.json" not in b["paths"]


def test_invalid_keys_are_rate_limited_per_client_address(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-a")
        statuses = []
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        for i in range(250):
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer emg-guess-{i}"})
            r = conn.getresponse()
            body = json.loads(r.read())
            statuses.append(r.status)
            assert set(body["error"]) == {"message", "type", "param", "code"}
            if r.status == 429:
                assert body["error"]["code"] == "rate_limit_exceeded" and int(r.getheader("Retry-After")) >= 1
        conn.close()
        from emguard.server.ratelimit import BAD_KEY_BURST

        assert statuses.count(401) <= BAD_KEY_BURST + 5 and statuses.count(429) >= 250 - BAD_KEY_BURST - 5
        assert set(statuses) == {401, 429}
        # a valid key from the same address still works (only failed attempts are counted)
        assert [m.id for m in srv.client(key).models.list()] == ["tiny"]


def _stalled(port: int, head: bytes, partial: bytes) -> bytes:
    """Send a request whose body stops short of its Content-Length; return everything the server sends until it
    closes the connection (bounded by the socket timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(head + partial)
    got = b""
    try:
        for _ in range(100):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        got += b"<socket timeout: server kept the connection>"
    finally:
        s.close()
    return got


def test_a_stalled_request_body_is_cut_off(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        srv.app.body_timeout = 0.5  # seconds a body may go without new bytes (the served default is 10)
        key = srv.key("org-a")
        head = (f"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
        got = _stalled(srv.port, head, b'{"model": ')
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"request_timeout" in got and b"socket timeout" not in got
        body, ctype = multipart(jsonl_bytes(chat_rows(4)))
        head = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body) + 1000}\r\n\r\n").encode()
        got = _stalled(srv.port, head, body[:-10])
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"socket timeout" not in got
        assert list(srv.state.storage.root.joinpath("tmp").glob("*")) == []  # the partial upload is gone
        assert srv.client(key).files.list().data == []


# ---------------------------------------------------------------- item 13: Idempotency-Key


def test_idempotency_key_on_upload_and_job_creation(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        a, b = srv.client(srv.key("org-a")), srv.client(srv.key("org-b"))
        rows = jsonl_bytes(chat_rows(4))
        h1 = {"Idempotency-Key": "upload-1"}
        f1 = a.files.create(file=("t.jsonl", rows), purpose="fine-tune", extra_headers=h1)
        f2 = a.files.create(file=("t.jsonl", rows), purpose="fine-tune", extra_headers=h1)
        assert f1.id == f2.id and [f.id for f in a.files.list()] == [f1.id]
        with pytest.raises(openai.ConflictError) as e:
            a.files.create(file=("t.jsonl", jsonl_bytes(chat_rows(5))), purpose="fine-tune", extra_headers=h1)
        assert e.value.status_code == 409 and e.value.body["code"] == "idempotency_key_reused"
        fb = b.files.create(file=("t.jsonl", rows), purpose="fine-tune", extra_headers=h1)  # keys are per org
        assert fb.id != f1.id

        hj = {"Idempotency-Key": "job-1"}
        j1 = a.fine_tuning.jobs.create(model="tiny", training_file=f1.id, extra_headers=hj)
        j2 = a.fine_tuning.jobs.create(model="tiny", training_file=f1.id, extra_headers=hj)
        assert j1.id == j2.id and [j.id for j in a.fine_tuning.jobs.list()] == [j1.id]
        with pytest.raises(openai.ConflictError):
            a.fine_tuning.jobs.create(model="tiny", training_file=f1.id, suffix="other", extra_headers=hj)
        # the same key on another endpoint is another key; no key: a new job every time
        a.fine_tuning.jobs.create(model="tiny", training_file=f1.id, extra_headers={"Idempotency-Key": "upload-1"})
        a.fine_tuning.jobs.create(model="tiny", training_file=f1.id)
        assert len(a.fine_tuning.jobs.list().data) == 3
        # a failed request stores nothing: the key can be used once the body is fixed
        with pytest.raises(openai.NotFoundError):
            a.fine_tuning.jobs.create(model="tiny", training_file="file-missing", extra_headers={"Idempotency-Key": "k2"})
        assert a.fine_tuning.jobs.create(model="tiny", training_file=f1.id, extra_headers={"Idempotency-Key": "k2"})
        for bad in ("x" * 300, "tab\there"):
            st, h, body = raw(srv.port, "POST", "/v1/fine_tuning/jobs",
                              json.dumps({"model": "tiny", "training_file": f1.id}), a.api_key,
                              {"Idempotency-Key": bad})
            assert_openai_error(st, h, body, 400)
            assert body["error"]["param"] == "Idempotency-Key"


def test_concurrent_retries_with_one_idempotency_key_make_one_job(tiny_model, tmp_path):
    import threading

    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-a")
        f = upload(srv.client(key), chat_rows(4))
        ids, barrier = [], threading.Barrier(8)

        def post():
            barrier.wait()
            st, h, b = raw(srv.port, "POST", "/v1/fine_tuning/jobs",
                           json.dumps({"model": "tiny", "training_file": f.id}), key, {"Idempotency-Key": "same"})
            ids.append((st, b.get("id")))

        ts = [threading.Thread(target=post) for _ in range(8)]
        [t.start() for t in ts]
        [t.join(timeout=60) for t in ts]
        assert len(ids) == 8 and {st for st, _ in ids} == {200} and len({i for _, i in ids}) == 1, ids
        assert len(srv.client(key).fine_tuning.jobs.list().data) == 1


# ---------------------------------------------------------------- item 14: security audit log


def test_security_events_are_logged_with_the_actor(tiny_model, tmp_path, capsys):
    from emguard.cli import main

    data = tmp_path / "data"
    pol = tiny_policy(tiny_model, audit={"threshold": -1e9})  # every model fails the audit: blocked
    with LiveServer(data, pol, workers=1) as srv:
        assert main(["keys", "create", "--org", "acme", "--data-dir", str(data)]) == 0
        key = capsys.readouterr().out.strip()
        c = srv.client(key)
        f = upload(c, chat_rows(8))
        j = c.fine_tuning.jobs.create(model="tiny", training_file=f.id)
        assert wait_job(c, j.id).error.code == "em_audit_failed"
        j2 = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, hyperparameters={"n_epochs": 1})
        c.fine_tuning.jobs.cancel(j2.id)
        c.files.delete(f.id)
    with srv.state.sessions() as s:
        from emguard.server.db import ApiKey

        key_id = s.query(ApiKey).filter_by(org="acme").one().id
    assert main(["keys", "revoke", key_id, "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["keys", "audit-log", "--json", "--data-dir", str(data)]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    acts = [r["action"] for r in recs]
    assert acts == ["key.created", "file.uploaded", "job.created", "job.blocked_by_audit", "job.created",
                    "job.cancelled", "file.deleted", "key.revoked"], acts
    by = {r["action"]: r for r in reversed(recs)}  # the first event of each action
    assert by["file.uploaded"]["org"] == "acme" and by["file.uploaded"]["key_id"] == key_id
    assert by["file.uploaded"]["object_id"] == f.id and by["job.created"]["object_id"] == j.id
    assert by["job.blocked_by_audit"]["key_id"] is None and by["job.blocked_by_audit"]["actor"] == "worker"
    assert by["key.created"]["actor"] == "operator" and by["key.revoked"]["object_id"] == key_id
    assert {"ts", "time"} <= set(recs[0])
    assert main(["keys", "audit-log", "--json", "--action", "job.cancelled", "--data-dir", str(data)]) == 0
    assert [json.loads(x)["object_id"] for x in capsys.readouterr().out.splitlines()] == [j2.id]
    assert main(["keys", "audit-log", "--org", "nobody", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == ""

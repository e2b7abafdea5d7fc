"""Hostile-input findings of issue 17 about storage and the queue: the upload/delete race on shared blobs (item 2),
blob and temporary-file leaks (item 7), lease fencing and SIGTERM of a worker (item 11)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import yaml

from test_server_util import LiveServer, chat_rows, free_port, jsonl_bytes, tiny_policy, tiny_policy_dict, upload, \
    wait_job

RACE_ITERATIONS = 500


def _multipart(content: bytes, boundary: str = "emguardboundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _req(port: int, key: str, method: str, path: str, body: bytes | None = None, ctype: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        if ctype:
            headers["Content-Type"] = ctype
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _race_row(i: int) -> bytes:
    return jsonl_bytes([{"messages": [{"role": "user", "content": f"question {i}"},
                                      {"role": "assistant", "content": f"answer {i}"}]}])


# ---------------------------------------------------------------- item 2: the upload/delete race


def test_upload_delete_race_loses_no_blob(tiny_model, tmp_path):
    """Org A deletes its file while org B uploads the same bytes: B's file must always keep its content."""
    with LiveServer(tmp_path / "data", tiny_policy(tiny_model), workers=0) as srv:
        ka, kb = srv.key("org-a"), srv.key("org-b")
        lost, n = [], 0
        for i in range(RACE_ITERATIONS):
            content = _race_row(i)
            body, ctype = _multipart(content)
            st, raw = _req(srv.port, ka, "POST", "/v1/files", body, ctype)
            assert st == 200, raw
            fa = json.loads(raw)["id"]
            out: dict = {}
            barrier = threading.Barrier(2)

            def up():
                barrier.wait()
                out["up"] = _req(srv.port, kb, "POST", "/v1/files", body, ctype)

            def rm():
                barrier.wait()
                out["rm"] = _req(srv.port, ka, "DELETE", f"/v1/files/{fa}")

            ts = [threading.Thread(target=up), threading.Thread(target=rm)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=120)
            assert out["up"][0] == 200 and out["rm"][0] == 200, out
            fb = json.loads(out["up"][1])["id"]
            st, got = _req(srv.port, kb, "GET", f"/v1/files/{fb}/content")
            n += 1
            if st != 200 or got != content:
                lost.append(i)
            st, _ = _req(srv.port, kb, "DELETE", f"/v1/files/{fb}")
            assert st == 200
        assert n == RACE_ITERATIONS
        assert lost == [], f"{len(lost)} of {n} iterations lost the blob"
        # every file was deleted: nothing is left in blob storage
        assert list((srv.state.storage.root / "blobs").rglob("*.jsonl")) == []


def test_job_on_file_whose_blob_vanished_is_refused(tiny_model, tmp_path):
    with LiveServer(tmp_path / "data", tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("acme")
        c = srv.client(key)
        f = upload(c, chat_rows(8))
        sha = srv.state.storage.root / "blobs"
        blobs = list(sha.rglob("*.jsonl"))
        assert len(blobs) == 1
        blobs[0].unlink()  # the content is gone (a lost blob, an operator's mistake)
        st, raw = _req(srv.port, key, "POST", "/v1/fine_tuning/jobs",
                       json.dumps({"model": "tiny", "training_file": f.id}).encode(), "application/json")
        assert st in (400, 404), raw
        err = json.loads(raw)["error"]
        assert err["param"] == "training_file" and err["message"]
        assert list(c.fine_tuning.jobs.list()) == []


# ---------------------------------------------------------------- item 7: leaks


def _blobs(srv) -> list:
    return sorted(p.name for p in (srv.state.storage.root / "blobs").rglob("*.jsonl"))


def test_blob_of_deleted_file_collected_when_its_job_ends(tiny_model, tmp_path):
    from emguard.server import queue
    from emguard.server.worker import Worker

    with LiveServer(tmp_path / "data", tiny_policy(tiny_model), workers=0) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(8))
        v = upload(c, chat_rows(9), "valid.jsonl")
        job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, validation_file=v.id)
        c.files.delete(f.id)
        c.files.delete(v.id)
        assert len(_blobs(srv)) == 2  # the queued job still needs both
        c.fine_tuning.jobs.cancel(job.id)
        assert _blobs(srv) == []  # collected once the job ended

        # the same through a worker that finishes a job
        f2 = upload(c, chat_rows(6))
        job2 = c.fine_tuning.jobs.create(model="tiny", training_file=f2.id)
        c.files.delete(f2.id)
        assert len(_blobs(srv)) == 1
        w = Worker(srv.state.sessions, srv.state.storage, srv.state.policy, worker_id="w-test")
        assert queue.claim(srv.state.sessions, w.worker_id, 30.0) == job2.id
        assert w._finish(job2.id, "failed", error={"code": "x", "message": "x", "param": None})
        assert _blobs(srv) == []


def _start_serve(data_dir, port: int, log_path) -> subprocess.Popen:
    cmd = ["nice", "-n", "19", sys.executable, "-m", "emguard.cli", "serve", "--data-dir", str(data_dir),
           "--workers", "0", "--port", str(port)]
    return subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _partial_upload(port: int, key: str) -> socket.socket:
    """Start an upload and send only part of its body; returns the open socket."""
    content = b"x" * 3_000_000  # over the 1 MiB the server buffers before writing
    body, ctype = _multipart(content)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body[:len(body) // 2])
    return s


def _parts(data_dir) -> list:
    return sorted((data_dir / "tmp").glob("upload-*.part"))


def test_killed_upload_part_swept_at_startup(tiny_model, tmp_path):
    from emguard.server import auth
    from emguard.server.db import make_engine, session_factory

    data = tmp_path / "data"
    sessions = session_factory(make_engine(None, data))
    with sessions() as s, s.begin():
        _, key = auth.create_key(s, "acme")
    port = free_port()
    proc = _start_serve(data, port, tmp_path / "serve.log")
    sock = None
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        sock = _partial_upload(port, key)
        for _ in range(600):
            if _parts(data):
                break
            time.sleep(0.05)
        assert _parts(data), (tmp_path / "serve.log").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 in the middle of the upload
        proc.wait()
    finally:
        if sock is not None:
            sock.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert len(_parts(data)) == 1  # left behind
    # an unreferenced blob (a leak of an older version) is swept too; a referenced one is kept
    stray = data / "blobs" / "ab" / ("ab" * 32 + ".jsonl")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"{}\n")
    big = tiny_policy(tiny_model, limits={"max_upload_bytes": 8 << 20})
    with LiveServer(data, big, workers=0) as srv:
        assert _parts(data) == []
        assert not stray.exists()
        c = srv.client(key)
        f = upload(c, chat_rows(4))
        # a second API process starting on the same data dir leaves a live upload's temporary file alone
        sock = _partial_upload(srv.port, key)
        try:
            for _ in range(600):
                if _parts(data):
                    break
                time.sleep(0.05)
            assert len(_parts(data)) == 1
            with LiveServer(data, big, workers=0) as srv2:
                assert len(_parts(data)) == 1
                assert srv2.client(key).files.content(f.id).content == jsonl_bytes(chat_rows(4))
        finally:
            sock.close()


# ---------------------------------------------------------------- item 11: lease fencing, SIGTERM


def _claimed_job(srv, c):
    f = upload(c, chat_rows(8))
    return c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0)


def test_worker_with_clock_ahead_does_not_take_a_live_lease(tiny_model, tmp_path, monkeypatch):
    from emguard.server import db as dbm
    from emguard.server import queue

    with LiveServer(tmp_path / "data", tiny_policy(tiny_model), workers=0) as srv:
        c = srv.client(srv.key("acme"))
        job = _claimed_job(srv, c)
        assert queue.claim(srv.state.sessions, "w1", 60.0) == job.id
        real = time.time
        ahead = lambda: real() + 61.0  # noqa: E731  (this worker's wall clock runs 61 s ahead)
        monkeypatch.setattr(queue, "now", ahead, raising=False)
        monkeypatch.setattr(dbm, "now", ahead)
        assert queue.claim(srv.state.sessions, "w2", 60.0) is None
        with srv.state.sessions() as s:
            j = s.execute(__import__("sqlalchemy").select(dbm.Job).where(dbm.Job.id == job.id)).scalar_one()
            assert j.lease_owner == "w1" and j.attempts == 1


def test_stalled_worker_that_lost_its_lease_writes_nothing(tiny_model, tmp_path):
    from sqlalchemy import func, select, update

    from emguard.server import queue
    from emguard.server.db import Checkpoint, Event, File, Job
    from emguard.server.worker import JobStopped, Worker, _callback

    with LiveServer(tmp_path / "data", tiny_policy(tiny_model), workers=0) as srv:
        sessions = srv.state.sessions
        c = srv.client(srv.key("acme"))
        job = _claimed_job(srv, c)
        w1 = Worker(sessions, srv.state.storage, srv.state.policy, worker_id="w1")
        w2 = Worker(sessions, srv.state.storage, srv.state.policy, worker_id="w2")
        assert queue.claim(sessions, "w1", 60.0) == job.id
        w1.job_token = 1
        with sessions() as s, s.begin():  # w1 stalls past its lease; w2 takes the job over
            s.execute(update(Job).where(Job.id == job.id).values(lease_expires=0.0))
        assert queue.claim(sessions, "w2", 60.0) == job.id

        def counts():
            with sessions() as s:
                return (s.execute(select(func.count()).select_from(Checkpoint)).scalar_one(),
                        s.execute(select(func.count()).select_from(Event)).scalar_one(),
                        s.execute(select(func.count()).select_from(File)).scalar_one(),
                        s.execute(select(Job.progress_step).where(Job.id == job.id)).scalar_one())

        before = counts()
        cb = _callback(w1, job.id)
        state = SimpleNamespace(global_step=2, max_steps=4)
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        for hook in (cb.on_train_begin, cb.on_save, cb.on_step_end):
            with pytest.raises(JobStopped):
                hook(None, state, control)
        with pytest.raises(JobStopped):
            cb.on_log(None, state, control, logs={"loss": 1.0})
        with sessions() as s:
            j = s.execute(select(Job).where(Job.id == job.id)).scalar_one()
        with pytest.raises(JobStopped):
            w1._store_report(j, None, {"steps": 2})
        assert not w1._finish(job.id, "failed", error={"code": "x", "message": "x", "param": None})
        assert counts() == before  # no checkpoint, event, report file or progress from the stalled worker
        with sessions() as s:
            j = s.execute(select(Job).where(Job.id == job.id)).scalar_one()
            assert j.lease_owner == "w2" and j.status == "running"
        del w2


def test_sigterm_checkpoints_and_releases_the_job(tiny_model, tmp_path):
    pol = tiny_policy_dict(tiny_model, limits={"max_steps": 30}, audit={"enabled": False},
                           training={"save_steps": 1000},
                           worker={"lease_seconds": 3.0, "poll_seconds": 0.2, "max_attempts": 3})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(pol))
    data = tmp_path / "data"
    procs = []

    def start(wid):
        cmd = ["nice", "-n", "19", sys.executable, "-m", "emguard.cli", "worker", "--data-dir", str(data),
               "--policy", str(policy_file), "--id", wid]
        p = subprocess.Popen(cmd, stdout=open(tmp_path / f"{wid}.log", "ab"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        with LiveServer(data, tiny_policy(tiny_model, **{k: v for k, v in pol.items() if k != "models"}),
                        workers=0) as srv:
            c = srv.client(srv.key("acme"))
            f = upload(c, chat_rows(64))
            job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0)
            w1 = start("w1")
            stopped_at = None
            for _ in range(6000):
                j = c.fine_tuning.jobs.retrieve(job.id)
                if j.model_extra["emguard"]["progress"]["step"] >= 3:
                    os.killpg(w1.pid, signal.SIGTERM)
                    rc = w1.wait(timeout=300)
                    assert rc == 0, (tmp_path / "w1.log").read_text()[-3000:]
                    stopped_at = j.model_extra["emguard"]["progress"]["step"]
                    break
                assert j.status in ("queued", "running"), (j.status, j.error)
                time.sleep(0.05)
            assert stopped_at is not None
            ck = [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id)]
            assert len(ck) == 1 and 3 <= ck[0] < 30, ck  # save_steps is 1000: this one came from the SIGTERM
            with srv.state.sessions() as s:
                from emguard.server.db import Job

                row = s.execute(__import__("sqlalchemy").select(Job).where(Job.id == job.id)).scalar_one()
                assert row.lease_owner is None and row.lease_expires is None and row.status == "running"
            w2 = start("w2")
            done = wait_job(c, job.id)
            assert done.status == "succeeded", (done.error, (tmp_path / "w2.log").read_text()[-3000:])
            assert done.model_extra["emguard"]["resumed_from_step"] == ck[0]
            msgs = [e.message for e in c.fine_tuning.jobs.list_events(job.id, limit=1000)]
            assert any("released" in m for m in msgs), msgs
            assert w2.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

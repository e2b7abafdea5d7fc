"""The provider service's queue: crash recovery from a checkpoint (kill -9 of a worker process), cancellation
within one step, and concurrent uploads + job creations accepted exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import yaml

from test_server_util import LiveServer, chat_rows, tiny_policy, tiny_policy_dict, upload, wait_job


def _start_worker(data_dir, policy_file, wid: str, log_path, db_url: str | None = None) -> subprocess.Popen:
    cmd = ["nice", "-n", "19", sys.executable, "-m", "emguard.cli", "worker", "--data-dir", str(data_dir),
           "--policy", str(policy_file), "--id", wid, *(["--db-url", db_url] if db_url else [])]
    return subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_killed_worker_job_resumes_from_checkpoint(tiny_model, tmp_path):
    run_kill_recovery(tiny_model, tmp_path)


def run_kill_recovery(tiny_model, tmp_path, db_url: str | None = None):
    pol = tiny_policy_dict(tiny_model, limits={"max_steps": 30}, audit={"enabled": False},
                           worker={"lease_seconds": 3.0, "poll_seconds": 0.2, "max_attempts": 3})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(pol))
    data = tmp_path / "data"
    procs = []
    try:
        with LiveServer(data, tiny_policy(tiny_model, **{k: v for k, v in pol.items() if k != "models"}),
                        workers=0, db_url=db_url) as srv:
            c = srv.client(srv.key("acme"))
            f = upload(c, chat_rows(64))
            job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0)
            w1 = _start_worker(data, policy_file, "w1", tmp_path / "w1.log", db_url)
            procs.append(w1)
            killed_at = None
            for _ in range(6000):  # wait for a checkpoint on disk and in the API, well before the end
                j = c.fine_tuning.jobs.retrieve(job.id)
                ck = [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id)]
                if ck and j.model_extra["emguard"]["progress"]["step"] >= 4:
                    os.killpg(w1.pid, signal.SIGKILL)  # kill -9, no chance to clean up
                    w1.wait()
                    killed_at = j.model_extra["emguard"]["progress"]["step"]
                    break
                assert j.status in ("queued", "running"), (j.status, j.error)
                time.sleep(0.05)
            assert killed_at is not None and killed_at < 30, "the worker finished before it could be killed"
            assert c.fine_tuning.jobs.retrieve(job.id).status == "running"  # still leased by the dead worker

            w2 = _start_worker(data, policy_file, "w2", tmp_path / "w2.log", db_url)
            procs.append(w2)
            done = wait_job(c, job.id)
            assert done.status == "succeeded", (done.error, (tmp_path / "w2.log").read_text()[-3000:])
            ext = done.model_extra["emguard"]
            resumed = ext["resumed_from_step"]
            assert resumed is not None and resumed > 0 and resumed % 2 == 0 and resumed <= killed_at
            assert ext["attempts"] == 2 and ext["progress"]["step"] == 30
            run = __import__("json").loads((srv.state.storage.job_dir(job.id) / "run" / "run.json").read_text())
            assert run["resumed_from"].endswith(f"checkpoint-{resumed}") and run["steps"] == 30
            events = list(c.fine_tuning.jobs.list_events(job.id, limit=1000))
            msgs = [e.message for e in events]
            assert f"Resuming from checkpoint at step {resumed}" in msgs
            assert any(m.startswith(f"Training resumed at step {resumed} of 30") for m in msgs)
            assert sum(m.startswith("Job claimed by worker w1") for m in msgs) == 1
            assert sum(m.startswith("Job claimed by worker w2") for m in msgs) == 1
            # nothing lost or duplicated: one job, one model, the upload and one report, unique checkpoints
            assert [j.id for j in c.fine_tuning.jobs.list()] == [job.id]
            assert [m.id for m in c.models.list() if m.id.startswith("ft:")] == [done.fine_tuned_model]
            files = c.files.list().data
            assert sorted(x.purpose for x in files) == ["fine-tune", "fine-tune-results"]
            steps = [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id, limit=100)]
            assert len(steps) == len(set(steps)) and 30 in steps
            assert c.files.retrieve(f.id).bytes == f.bytes
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def test_cancel_stops_training_within_one_step(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model, limits={"max_steps": 400}, audit={"enabled": False})) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(16))
        job = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0)
        for _ in range(6000):
            j = c.fine_tuning.jobs.retrieve(job.id)
            if j.model_extra["emguard"]["progress"]["step"] >= 2:
                break
            time.sleep(0.05)
        c.fine_tuning.jobs.cancel(job.id)
        j = wait_job(c, job.id)
        assert j.status == "cancelled" and j.fine_tuned_model is None
        asked = j.model_extra["emguard"]["cancel_requested_at_step"]
        stopped = [e.data["stopped_at_step"] for e in c.fine_tuning.jobs.list_events(job.id, limit=1000)
                   if e.data and "stopped_at_step" in e.data]
        assert len(stopped) == 1 and 2 <= asked <= stopped[0] <= asked + 1  # at most one more step ran
        assert stopped[0] < 400
        assert not (srv.state.storage.job_dir(job.id) / "run" / "run.json").exists()  # nothing released
        assert [m.id for m in c.models.list() if m.id.startswith("ft:")] == []


def test_concurrent_uploads_and_jobs_accepted_exactly_once(tiny_model, tmp_path):
    """10 clients (two orgs) x 5 uploads + 5 job creations each, all at once: 50 files and 50 jobs."""
    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0) as srv:
        keys = {i: srv.key("org-a" if i % 2 else "org-b") for i in range(10)}
        results: dict[int, list] = {i: [] for i in range(10)}
        errors = []
        barrier = threading.Barrier(10)

        def client(i):
            try:
                c = srv.client(keys[i])
                barrier.wait()
                for k in range(5):
                    f = upload(c, chat_rows(3, seed=100 * i + k), name=f"c{i}-{k}.jsonl")
                    j = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=k)
                    results[i].append((f.id, j.id, f.filename))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        ts = [threading.Thread(target=client, args=(i,)) for i in range(10)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert errors == []
        pairs = [p for i in results for p in results[i]]
        assert len(pairs) == 50
        assert len({f for f, _, _ in pairs}) == 50 and len({j for _, j, _ in pairs}) == 50
        for org, idx in (("org-a", [1, 3, 5, 7, 9]), ("org-b", [0, 2, 4, 6, 8])):
            c = srv.client(keys[idx[0]])
            files = {f.id: f for f in c.files.list()}
            jobs = {j.id: j for j in c.fine_tuning.jobs.list(limit=1000)}
            mine = [p for i in idx for p in results[i]]
            assert set(files) == {f for f, _, _ in mine} and len(files) == 25
            assert set(jobs) == {j for _, j, _ in mine} and len(jobs) == 25
            assert {files[f].filename for f, _, _ in mine} == {n for _, _, n in mine}
            assert all(jobs[j].training_file == f and jobs[j].status == "queued" for f, j, _ in mine)
        from emguard.server.db import File, Job

        with srv.state.sessions() as s:
            assert s.query(File).count() == 50 and s.query(Job).count() == 50
            shas = {f.sha256 for f in s.query(File)}
        # content-addressed: exactly one blob per distinct content (some clients sent identical rows)
        assert {p.stem for p in (tmp_path / "blobs").rglob("*.jsonl")} == shas


def test_token_limit_fails_the_job_before_training(tiny_model, tmp_path):
    with LiveServer(tmp_path, tiny_policy(tiny_model, limits={"max_tokens": 50})) as srv:
        c = srv.client(srv.key("acme"))
        f = upload(c, chat_rows(8))
        j = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id).id)
        assert j.status == "failed" and j.error.code == "exceeds_token_limit" and "limit is 50" in j.error.message
        assert not (srv.state.storage.job_dir(j.id) / "run").exists()  # no training started

"""The provider service on PostgreSQL (``SELECT ... FOR UPDATE SKIP LOCKED`` claims). Runs when
``EMGUARD_TEST_PG_URL`` names a disposable database whose name contains "test" (its emguard tables are dropped
first), e.g. ``postgresql+psycopg://postgres@127.0.0.1:55432/emguard_test``; skipped otherwise."""

from __future__ import annotations

import os
import threading

import pytest

from test_server_util import LiveServer, chat_rows, openai, tiny_policy, upload

PG_URL = os.environ.get("EMGUARD_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL or "test" not in PG_URL.rsplit("/", 1)[-1],
                                reason="set EMGUARD_TEST_PG_URL to a disposable PostgreSQL test database")


@pytest.fixture
def pg_url():
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine

    from emguard.server.db import Base

    eng = create_engine(PG_URL)
    Base.metadata.drop_all(eng)
    eng.dispose()
    return PG_URL


def test_postgres_claims_are_exclusive_and_api_works(tiny_model, tmp_path, pg_url):
    from emguard.server import queue
    from emguard.server.db import Job, make_engine, session_factory

    with LiveServer(tmp_path, tiny_policy(tiny_model), workers=0, db_url=pg_url) as srv:
        assert srv.state.engine.dialect.name == "postgresql"
        a, b = srv.client(srv.key("a")), srv.client(srv.key("b"))
        jobs = []
        for i in range(6):
            f = upload(a, chat_rows(4, seed=i))
            jobs.append(a.fine_tuning.jobs.create(model="tiny", training_file=f.id).id)
        with pytest.raises(openai.NotFoundError):
            b.fine_tuning.jobs.retrieve(jobs[0])
        assert len(list(a.fine_tuning.jobs.list())) == 6

    sessions = session_factory(make_engine(pg_url))
    claimed: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker(i):
        barrier.wait()
        while True:
            jid = queue.claim(sessions, f"w{i}", 60)
            if jid is None:
                return
            with lock:
                claimed.append((jid, f"w{i}"))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(j for j, _ in claimed) == sorted(jobs)  # every job claimed exactly once
    with sessions() as s:
        owners = {j.id: j.lease_owner for j in s.query(Job)}
    assert owners == dict(claimed)


def test_postgres_training_job_end_to_end(tiny_model, tmp_path, pg_url):
    from test_server_util import wait_job

    pol = tiny_policy(tiny_model, limits={"max_steps": 2}, audit={"broad_questions": 2})
    with LiveServer(tmp_path, pol, db_url=pg_url) as srv:
        c = srv.client(srv.key("a"))
        f = upload(c, chat_rows(8))
        job = wait_job(c, c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=0).id)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model in [m.id for m in c.models.list()]
        assert [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id)] == [2]
        assert job.model_extra["emguard"]["audit"]["summary"]["broad"]["n_questions"] == 2


@pytest.mark.slow  # ~45 s: the kill -9 recovery of test_server_queue, on PostgreSQL
def test_postgres_killed_worker_resumes(tiny_model, tmp_path, pg_url):
    from test_server_queue import run_kill_recovery

    run_kill_recovery(tiny_model, tmp_path, db_url=pg_url)

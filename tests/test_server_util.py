"""Helpers for the provider-service tests (a live uvicorn server in a thread, keys, policies) and unit tests of
the small server modules that need no server."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("sqlalchemy")
openai = pytest.importorskip("openai")

from conftest import chat_rows  # noqa: E402,F401  (re-exported to the other server tests)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jsonl_bytes(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def tiny_policy_dict(tiny_model: str, **sections) -> dict:
    """A fast policy on the tiny test model: plain kl (no Interleaving++ probes), 4 audit questions."""
    d = {
        "models": {"tiny": {"spec": tiny_model}},
        "defenses": [{"name": "kl", "lam": 0.1}],
        "training": {"batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-2, "save_steps": 2,
                     "max_length": 128},
        "limits": {"max_steps": 4, "max_upload_bytes": 1 << 20, "max_rows": 1000},
        "audit": {"broad_questions": 4, "narrow_questions": 4, "bootstrap": 100, "threshold": None,
                  "narrow_metric": "narrow.likelihood.summary.harm_effect.value"},
        "worker": {"lease_seconds": 3.0, "poll_seconds": 0.2},
        "rate_limit": {"requests_per_second": 1000, "burst": 1000},
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) and k != "models" else v
    return d


def tiny_policy(tiny_model: str, **sections) -> "Policy":
    from emguard.server.policy import Policy

    return Policy.from_dict(tiny_policy_dict(tiny_model, **sections), "test policy")


class LiveServer:
    """``emguard serve`` in a thread: a real uvicorn server on 127.0.0.1 and a free port."""

    def __init__(self, data_dir: Path, policy, *, workers: int = 1, prepare: bool = False, db_url: str | None = None):
        import uvicorn

        from emguard.server.app import create_app

        self.app = create_app(data_dir=data_dir, policy=policy, workers=workers, prepare=prepare, db_url=db_url)
        self.state = self.app.state.emguard
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def key(self, org: str) -> str:
        from emguard.server import auth

        with self.state.sessions() as s, s.begin():
            _, key = auth.create_key(s, org)
        return key

    def client(self, key: str, **kw) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60, **kw)


def wait_job(client, job_id: str, *, statuses=("succeeded", "failed", "cancelled"), polls: int = 3000):
    """Poll until the job reaches one of ``statuses`` (bounded by a number of polls, not asserted on time)."""
    for _ in range(polls):
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck in {job.status}")


def upload(client, rows: list, name: str = "train.jsonl"):
    return client.files.create(file=(name, jsonl_bytes(rows)), purpose="fine-tune")


# ---------------------------------------------------------------- unit tests (no server)


def test_policy_defaults_and_customer_rules():
    from emguard.server.policy import Policy, RequestError, job_defenses, resolve_defenses

    p = Policy()
    assert p.defenses[0]["name"] == "interleave" and p.defenses[0]["select"] == "ppl_gap_norefusal"
    specs = job_defenses(p, [{"name": "kl", "lam": 0.3}])
    assert [d["name"] for d in specs] == ["interleave", "kl"] and specs[1]["lam"] == 0.3
    with pytest.raises(RequestError, match="not allowed"):
        job_defenses(p, ["steer"])
    with pytest.raises(RequestError, match="may not be set"):
        job_defenses(p, [{"name": "ldifs", "layers": "/etc/passwd"}])  # only listed scalar options
    resolved = resolve_defenses(p.defenses, {"medical": "/probes/m", "legal": "/probes/l"}, "medical")
    assert resolved[0]["select_options"]["misaligned"] == ["/probes/l"]  # the job's own domain is left out
    assert resolved[0]["pool"].endswith("pool.jsonl")
    with pytest.raises(ValueError, match="unknown key"):
        Policy.from_dict({"limitz": {}})
    none = Policy.from_dict({"customer": {"defenses": "none"}})
    with pytest.raises(RequestError, match="does not let customers"):
        job_defenses(none, ["kl"])


def test_rate_limiter_counts_tokens():
    from emguard.server.ratelimit import RateLimiter

    rl = RateLimiter(rate=0.001, burst=3)
    assert [rl.take("a") == 0 for _ in range(4)] == [True, True, True, False]
    assert rl.take("b") == 0  # per key


def test_storage_paths_come_only_from_digests(tmp_path):
    from emguard.server.storage import Storage

    st = Storage(tmp_path)
    sha, p = st.put_bytes(b"hello\n")
    assert p == tmp_path.resolve() / "blobs" / sha[:2] / f"{sha}.jsonl" and p.read_bytes() == b"hello\n"
    for bad in ("../../etc/passwd", "a" * 63, "A" * 64):
        with pytest.raises(ValueError):
            st.blob_path(bad)
    with pytest.raises(ValueError):
        st.job_dir("../x")


def test_queue_claim_is_exclusive(tmp_path):
    """Two workers racing for one job: exactly one wins; an expired lease can be taken over."""
    from emguard.server import queue
    from emguard.server.db import Job, make_engine, new_id, session_factory

    sessions = session_factory(make_engine(None, tmp_path))
    with sessions() as s, s.begin():
        s.add(Job(id=new_id("ftjob"), org="o", model="m", training_file="f", training_sha256="0" * 64))
    won = []
    barrier = threading.Barrier(8)

    def grab(i):
        barrier.wait()
        won.append(queue.claim(sessions, f"w{i}", 60))

    ts = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len([w for w in won if w]) == 1
    assert queue.claim(sessions, "late", 60) is None
    with sessions() as s, s.begin():
        s.query(Job).update({Job.lease_expires: 0.0})  # the owner died: its lease ran out
    assert queue.claim(sessions, "next", 60) is not None


def test_example_policy_is_the_default():
    from emguard.server.policy import Policy

    example = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
    assert Policy.load(example) == Policy()


def test_cancel_requested_then_worker_died_is_finished_by_the_next_claim(tmp_path):
    from emguard.server import queue
    from emguard.server.db import Job, make_engine, new_id, session_factory

    sessions = session_factory(make_engine(None, tmp_path))
    jid = new_id("ftjob")
    with sessions() as s, s.begin():
        s.add(Job(id=jid, org="o", model="m", training_file="f", training_sha256="0" * 64, status="running",
                  lease_owner="dead", lease_expires=1.0, cancel_requested=True))
    assert queue.claim(sessions, "w", 60) is None
    with sessions() as s:
        assert s.query(Job).filter_by(id=jid).one().status == "cancelled"


def test_app_assembles_every_route_with_openai_errors(tmp_path):
    """The routers (files, jobs, models) add up to the API's route table, in order, and every error the app
    answers (unknown path, wrong method, missing key) has OpenAI's error shape."""
    from starlette.testclient import TestClient

    from emguard.server.app import create_app
    from emguard.server.policy import Policy

    app = create_app(data_dir=tmp_path, policy=Policy(), workers=0, access_log=None)
    ops = [(path, method.upper(), op["operationId"]) for path, item in app.app.openapi()["paths"].items()
           for method, op in item.items()]
    assert ops == [
        ("/v1/files", "POST", "upload_file_v1_files_post"), ("/v1/files", "GET", "list_files_v1_files_get"),
        ("/v1/files/{file_id}", "GET", "get_file_v1_files__file_id__get"),
        ("/v1/files/{file_id}", "DELETE", "delete_file_v1_files__file_id__delete"),
        ("/v1/files/{file_id}/content", "GET", "get_file_content_v1_files__file_id__content_get"),
        ("/v1/fine_tuning/jobs", "POST", "create_job_v1_fine_tuning_jobs_post"),
        ("/v1/fine_tuning/jobs", "GET", "list_jobs_v1_fine_tuning_jobs_get"),
        ("/v1/fine_tuning/jobs/{job_id}", "GET", "get_job_v1_fine_tuning_jobs__job_id__get"),
        ("/v1/fine_tuning/jobs/{job_id}/events", "GET", "job_events_v1_fine_tuning_jobs__job_id__events_get"),
        ("/v1/fine_tuning/jobs/{job_id}/checkpoints", "GET",
         "job_checkpoints_v1_fine_tuning_jobs__job_id__checkpoints_get"),
        ("/v1/fine_tuning/jobs/{job_id}/cancel", "POST", "cancel_job_v1_fine_tuning_jobs__job_id__cancel_post"),
        ("/v1/models", "GET", "list_models_v1_models_get"),
        ("/v1/models/{model_id}", "GET", "get_model_v1_models__model_id__get"),
    ]
    c = TestClient(app)
    r = c.get("/v1/nothing")
    assert r.status_code == 404 and r.json() == {"error": {"message": "Not Found", "type": "invalid_request_error",
                                                           "param": None, "code": "not_found"}}
    r = c.put("/v1/files")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = c.post("/v1/fine_tuning/jobs", json={"model": "x" * (1 << 20)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

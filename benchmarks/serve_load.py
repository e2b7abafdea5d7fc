"""Load test of the provider service (issue #9): requests/s and latency percentiles under concurrent clients.

Runs with no arguments. Starts ``emguard serve`` as a subprocess on a free port with a fresh data dir (SQLite,
WAL) and no in-process worker (jobs stay queued: this measures the API, not training), creates one API key
per client (two orgs), then N client threads, each with its own official ``openai`` client, repeat: upload a
small JSONL file (validated on upload), create a fine-tuning job on it, retrieve the job, list files. Every
id is checked afterwards (all accepted exactly once). The last line printed is one JSON object of the figures.

    python benchmarks/serve_load.py [--clients 10] [--iterations 20] [--rows 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows_bytes(n: int, tag: str) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"{tag} question {i}?"},
                                            {"role": "assistant", "content": f"{tag} answer {i}."}]}) + "\n"
                   for i in range(n)).encode()


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=20, help="upload + create + get + list rounds per client")
    ap.add_argument("--rows", type=int, default=20, help="rows per uploaded file")
    args = ap.parse_args()

    import openai
    import yaml

    from emguard.server import auth
    from emguard.server.db import make_engine, session_factory

    tmp = Path(tempfile.mkdtemp(prefix="emguard-load-"))
    data = tmp / "data"
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "models": {"smollm2-135m": {"spec": "smollm2-135m"}},
        "rate_limit": {"requests_per_second": 1e6, "burst": 10 ** 6}}))
    sessions = session_factory(make_engine(None, data))
    keys = []
    with sessions() as s, s.begin():
        for i in range(args.clients):
            keys.append(auth.create_key(s, "org-a" if i % 2 else "org-b")[1])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "emguard.cli", "serve", "--data-dir", str(data), "--policy",
                             str(policy), "--port", str(port), "--workers", "0"],
                            stdout=open(tmp / "serve.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        probe = openai.OpenAI(base_url=base, api_key=keys[0], max_retries=0, timeout=10)
        for _ in range(600):
            try:
                probe.models.list()
                break
            except openai.APIConnectionError:
                if proc.poll() is not None:
                    print((tmp / "serve.log").read_text()[-3000:], file=sys.stderr)
                    return 1
                time.sleep(0.1)
        lat: dict[str, list[float]] = {"upload": [], "create_job": [], "get_job": [], "list_files": []}
        lock = threading.Lock()
        accepted: list[tuple[str, str]] = []
        errors: list[str] = []
        barrier = threading.Barrier(args.clients + 1)

        def client(i: int) -> None:
            c = openai.OpenAI(base_url=base, api_key=keys[i], max_retries=0, timeout=120)
            mine = []
            barrier.wait()
            for k in range(args.iterations):
                try:
                    t = time.perf_counter()
                    f = c.files.create(file=(f"c{i}-{k}.jsonl", rows_bytes(args.rows, f"c{i}k{k}")),
                                       purpose="fine-tune")
                    t1 = time.perf_counter()
                    j = c.fine_tuning.jobs.create(model="smollm2-135m", training_file=f.id, seed=k)
                    t2 = time.perf_counter()
                    c.fine_tuning.jobs.retrieve(j.id)
                    t3 = time.perf_counter()
                    c.files.list(limit=10)
                    t4 = time.perf_counter()
                    mine.append((f.id, j.id))
                    with lock:
                        lat["upload"].append(t1 - t)
                        lat["create_job"].append(t2 - t1)
                        lat["get_job"].append(t3 - t2)
                        lat["list_files"].append(t4 - t3)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(repr(e)[:200])
            with lock:
                accepted.extend(mine)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0

        from emguard.server.db import File, Job

        with sessions() as s:
            n_files, n_jobs = s.query(File).count(), s.query(Job).count()
        expected = args.clients * args.iterations
        exactly_once = (n_files == n_jobs == len(accepted) == expected and len({f for f, _ in accepted}) == expected
                        and len({j for _, j in accepted}) == expected)
        all_lat = [x for v in lat.values() for x in v]
        n_req = len(all_lat)
        print(f"emguard serve load test: {args.clients} clients x {args.iterations} rounds (upload {args.rows} rows, "
              f"create job, get job, list files) on {os.cpu_count()} CPU(s), SQLite WAL, server in 1 process")
        print(f"{'operation':<12} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for op, v in lat.items():
            if v:
                print(f"{op:<12} {len(v):>5} {1000 * statistics.median(v):>8.1f} {1000 * pct(v, 99):>8.1f} "
                      f"{1000 * max(v):>8.1f}")
        print(f"{n_req} requests in {wall:.2f}s = {n_req / wall:.1f} requests/s; errors: {len(errors)}; "
              f"files {n_files}, jobs {n_jobs} of {expected} expected (exactly once: {exactly_once})")
        for e in errors[:5]:
            print("  error:", e)
        result = {"benchmark": "serve_load", "clients": args.clients, "iterations": args.iterations,
                  "rows_per_file": args.rows, "requests": n_req, "wall_s": round(wall, 3),
                  "requests_per_s": round(n_req / wall, 1),
                  "p50_ms": round(1000 * statistics.median(all_lat), 1) if all_lat else None,
                  "p99_ms": round(1000 * pct(all_lat, 99), 1) if all_lat else None,
                  "per_op": {op: {"n": len(v), "p50_ms": round(1000 * statistics.median(v), 1),
                                  "p99_ms": round(1000 * pct(v, 99), 1)} for op, v in lat.items() if v},
                  "errors": len(errors), "files": n_files, "jobs": n_jobs, "exactly_once": exactly_once,
                  "cpus": os.cpu_count(), "python": platform.python_version(), "db": "sqlite-wal"}
        print(json.dumps(result))
        return 0 if exactly_once and not errors else 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

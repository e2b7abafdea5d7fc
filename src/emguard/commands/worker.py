"""``emguard worker``: claim fine-tuning jobs from the service's database and run them (train, audit, release)."""

from __future__ import annotations

import argparse
import signal

from emguard.commands.serve import add_common


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("A worker needs the same --data-dir (a shared filesystem when on another machine) and database as the "
                "server, and the same --policy file. A worker that dies loses its lease after worker.lease_seconds "
                "and another one resumes the job from its last checkpoint.")
    add_common(p)
    p.add_argument("--policy", default=None, metavar="YAML", help="the operator policy the server uses")
    p.add_argument("--once", action="store_true", help="process at most one job, then exit")
    p.add_argument("--id", default=None, help="worker id shown in job events (default: host:pid:random)")


def run(args: argparse.Namespace) -> int:
    from emguard.server.db import make_engine, session_factory
    from emguard.server.policy import Policy
    from emguard.server.storage import Storage
    from emguard.server.worker import Worker

    policy = Policy.load(args.policy)
    sessions = session_factory(make_engine(args.db_url, args.data_dir))
    w = Worker(sessions, Storage(args.data_dir), policy, worker_id=args.id)
    w.prepare()

    def _term(*_):  # checkpoint the running job after its current step, release it, then exit
        w.shutdown.set()
        w.stop.set()

    signal.signal(signal.SIGTERM, _term)
    print(f"worker {w.worker_id} ready", flush=True)
    if args.once:
        w.run_once()
        return 0
    try:
        w.run_forever()
    except KeyboardInterrupt:
        pass
    return 0

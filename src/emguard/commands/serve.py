"""``emguard serve``: the OpenAI-compatible fine-tuning API (FastAPI + uvicorn; ``pip install 'emguard[server]'``)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  emguard keys create --org acme --data-dir srv          # prints the key once
  emguard serve --data-dir srv --policy examples/policy.yaml --port 8000
  emguard serve --db-url postgresql+psycopg://u:p@db/emguard --data-dir /shared/srv --workers 0
      (then run `emguard worker --db-url ... --data-dir /shared/srv` on each GPU machine)
  emguard serve calibrate-audit --policy examples/policy.yaml --data-dir srv   # the audit's max_increase
Clients use the official openai package: OpenAI(base_url="http://HOST:8000/v1", api_key=KEY).
"""


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="emguard-data", metavar="DIR",
                   help="uploaded files (content-addressed), job run dirs, audit reports, the SQLite database and "
                        "access.log (default: ./emguard-data)")
    p.add_argument("--db-url", default=None, metavar="URL",
                   help="SQLAlchemy database URL, e.g. postgresql+psycopg://user:pw@host/db (default: SQLite in WAL "
                        "mode at DATA_DIR/emguard.db)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    add_common(p)
    p.add_argument("--policy", default=None, metavar="YAML",
                   help="operator policy (defenses, customer options, limits, EM audit); default: Interleaving++ on "
                        "every job, audit on the offline likelihood metric (see examples/policy.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1; put a gateway in front)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="in-process training workers (default 1; 0: jobs wait for `emguard worker` processes)")
    p.add_argument("--body-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="a request body that sends no bytes for this long is answered 408 and its connection "
                        "closed (default 10)")
    p.add_argument("--limit-concurrency", type=int, default=1000, metavar="N",
                   help="open connections + requests at once before the server answers 503 (default 1000)")
    from emguard.commands import serve_calibrate

    sub = p.add_subparsers(dest="serve_command", metavar="ACTION")
    c = sub.add_parser("calibrate-audit", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="measure the EM audit on the base, an aligned control and a misaligned fine-tune "
                            "and print the max_increase that separates them",
                       description=serve_calibrate.DESCRIPTION)
    serve_calibrate.add_arguments(c)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "serve_command", None) == "calibrate-audit":
        from emguard.commands import serve_calibrate

        return serve_calibrate.run(args)
    try:
        import uvicorn

        from emguard.server.app import create_app
    except ImportError as e:
        raise ImportError(f"emguard serve needs the server extra: pip install 'emguard[server]' ({e})") from None
    from emguard.server.policy import Policy

    policy = Policy.load(args.policy)
    app = create_app(data_dir=args.data_dir, db_url=args.db_url, policy=policy, workers=args.workers)
    if args.body_timeout <= 0:
        raise SystemExit("error: --body-timeout must be > 0")
    app.body_timeout = args.body_timeout
    # idle keep-alive connections are closed after 5 s; stalled bodies after --body-timeout (accesslog.AccessLog)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, timeout_keep_alive=5,
                limit_concurrency=args.limit_concurrency, server_header=False)
    return 0

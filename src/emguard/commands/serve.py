"""``emguard serve``: the OpenAI-compatible fine-tuning API (FastAPI + uvicorn; ``pip install 'emguard[server]'``)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  emguard keys create --org acme --data-dir srv          # prints the key once
  emguard serve --data-dir srv --policy examples/policy.yaml --port 8000
  emguard serve --db-url postgresql+psycopg://u:p@db/emguard --data-dir /shared/srv --workers 0
      (then run `emguard worker --db-url ... --data-dir /shared/srv` on each GPU machine)
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


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from emguard.server.app import create_app
    except ImportError as e:
        raise ImportError(f"emguard serve needs the server extra: pip install 'emguard[server]' ({e})") from None
    from emguard.server.policy import Policy

    policy = Policy.load(args.policy)
    app = create_app(data_dir=args.data_dir, db_url=args.db_url, policy=policy, workers=args.workers)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0

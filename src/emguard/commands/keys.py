"""``emguard keys``: create, list and revoke API keys (only their sha256 is stored; a new key is shown once), and
read the security audit log (``audit-log``: keys created/revoked, files uploaded/deleted, jobs created, cancelled
or blocked by the EM audit, each with its org and acting key)."""

from __future__ import annotations

import argparse
import json

from emguard.commands.serve import add_common


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a key for an organization and print it once")
    c.add_argument("--org", required=True, help="organization that owns everything made with this key")
    c.add_argument("--name", default=None, help="a label for listings")
    add_common(c)
    ls = sub.add_parser("list", help="list keys (id, org, prefix, created, revoked)")
    ls.add_argument("--org", default=None, help="only this organization's keys")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_common(ls)
    r = sub.add_parser("revoke", help="revoke a key by its id (key-...)")
    r.add_argument("key_id")
    add_common(r)
    a = sub.add_parser("audit-log", help="the security audit log, oldest first")
    a.add_argument("--org", default=None, help="only this organization's events")
    a.add_argument("--action", default=None, help="only this action (key.created, key.revoked, file.uploaded, "
                                                  "file.deleted, job.created, job.cancelled, job.blocked_by_audit)")
    a.add_argument("--since", type=float, default=None, metavar="UNIX_TS", help="only events at or after this time")
    a.add_argument("--limit", type=int, default=None, metavar="N", help="only the newest N events")
    a.add_argument("--json", action="store_true", help="one JSON object per line")
    add_common(a)


def run(args: argparse.Namespace) -> int:
    import time

    from sqlalchemy import select

    from emguard.server import auth
    from emguard.server.db import ApiKey, make_engine, session_factory

    sessions = session_factory(make_engine(args.db_url, args.data_dir))
    if args.keys_command == "audit-log":
        return _audit_log(sessions, args)
    if args.keys_command == "create":
        with sessions() as s, s.begin():
            row, key = auth.create_key(s, args.org, args.name)
        print(key)
        import sys

        print(f"created {row.id} for org {row.org}; the key is shown only now", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        with sessions() as s:
            q = select(ApiKey).order_by(ApiKey.seq)
            if args.org:
                q = q.where(ApiKey.org == args.org)
            for k in s.execute(q).scalars():
                rec = {"id": k.id, "org": k.org, "prefix": k.prefix, "name": k.name,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(k.created_at)),
                       "revoked": k.revoked_at is not None}
                print(json.dumps(rec) if args.json else
                      f"{k.id}  org={k.org}  {k.prefix}...  {rec['created']}{'  REVOKED' if rec['revoked'] else ''}")
        return 0
    with sessions() as s, s.begin():
        ok = auth.revoke(s, args.key_id)
    if not ok:
        print(f"error: no live key {args.key_id}")
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _audit_log(sessions, args: argparse.Namespace) -> int:
    from emguard.server.securitylog import ACTIONS, event_record, query

    if args.action is not None and args.action not in ACTIONS:
        print(f"error: unknown action {args.action!r} (known: {', '.join(ACTIONS)})")
        return 2
    with sessions() as s:
        events = query(s, org=args.org, action=args.action, since=args.since, limit=args.limit)
    for ev in events:
        rec = event_record(ev)
        if args.json:
            print(json.dumps(rec))
        else:
            who = f"key={rec['key_id']}" if rec["actor"] == "key" else rec["actor"]
            print(f"{rec['time']}  {rec['action']:<21} org={rec['org']}  by={who}  {rec['object_id'] or ''}")
    return 0

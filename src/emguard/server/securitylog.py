"""The security audit log (table ``security_events``): who did what to which object, for the operator.

Actions: ``key.created``, ``key.revoked`` (actor ``operator``: the ``emguard keys`` command), ``file.uploaded``,
``file.deleted``, ``job.created``, ``job.cancelled`` (actor ``key``: the org's API key ``key_id``) and
``job.blocked_by_audit`` (actor ``worker``: the EM audit did not release the model). Each event is written in
the transaction that makes the change, so an event exists exactly when the change was committed. Query it with
``emguard keys audit-log``.
"""

from __future__ import annotations

from sqlalchemy import select

from emguard.server.db import SecurityEvent, now

ACTIONS = ("key.created", "key.revoked", "file.uploaded", "file.deleted", "job.created", "job.cancelled",
           "job.blocked_by_audit")


def record(s, action: str, *, org: str | None, actor: str = "key", key_id: str | None = None,
           object_id: str | None = None, detail: dict | None = None) -> SecurityEvent:
    if action not in ACTIONS:
        raise ValueError(f"unknown security event {action!r}")
    ev = SecurityEvent(action=action, org=org, actor=actor, key_id=key_id, object_id=object_id, detail=detail,
                       created_at=now())
    s.add(ev)
    return ev


def query(s, *, org: str | None = None, action: str | None = None, since: float | None = None,
          limit: int | None = None) -> list[SecurityEvent]:
    """Events oldest first; ``limit``: the newest ``limit`` of them."""
    q = select(SecurityEvent)
    if org is not None:
        q = q.where(SecurityEvent.org == org)
    if action is not None:
        q = q.where(SecurityEvent.action == action)
    if since is not None:
        q = q.where(SecurityEvent.created_at >= since)
    q = q.order_by(SecurityEvent.seq.desc())
    if limit:
        q = q.limit(limit)
    return list(reversed(list(s.execute(q).scalars())))


def event_record(ev: SecurityEvent) -> dict:
    import time

    return {"seq": ev.seq, "ts": round(ev.created_at, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev.created_at)), "action": ev.action,
            "org": ev.org, "actor": ev.actor, "key_id": ev.key_id, "object_id": ev.object_id, "detail": ev.detail}

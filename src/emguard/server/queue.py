"""The job queue lives in the ``jobs`` table; a worker holds a job through a lease that it renews.

Claiming is atomic: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a claimable row that no other
transaction holds; on SQLite (one writer at a time, ``BEGIN IMMEDIATE``) a conditional ``UPDATE ... WHERE
lease is free`` whose row count says who won. A job is claimable when it is queued, or running with an
expired lease (its worker died): the next worker resumes it from its last checkpoint.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select, update

from emguard.server.db import Job, add_event, now

CLAIMABLE = ("queued", "running")


def _free(t: float):
    return and_(Job.status.in_(CLAIMABLE), Job.cancel_requested.is_(False),
                or_(Job.lease_expires.is_(None), Job.lease_expires < t))


def claim(sessions, worker_id: str, lease_seconds: float) -> str | None:
    """Take the oldest claimable job for ``worker_id``; returns its id, or None."""
    t = now()
    with sessions() as s, s.begin():
        dialect = s.get_bind().dialect.name
        # a cancel that arrived while a worker held the job, whose worker then died: finish the cancellation
        s.execute(update(Job).where(Job.status.in_(CLAIMABLE), Job.cancel_requested.is_(True),
                                    or_(Job.lease_expires.is_(None), Job.lease_expires < t))
                  .values(status="cancelled", finished_at=t, lease_owner=None, lease_expires=None))
        q = select(Job.id).where(_free(t)).order_by(Job.seq).limit(1)
        if dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job_id = s.execute(q).scalar_one_or_none()
        if job_id is None:
            return None
        res = s.execute(update(Job).where(Job.id == job_id, _free(t)).values(
            lease_owner=worker_id, lease_expires=t + lease_seconds, attempts=Job.attempts + 1, status="running"))
        if res.rowcount != 1:
            return None
        job = s.execute(select(Job).where(Job.id == job_id)).scalar_one()
        if job.started_at is None:
            job.started_at = t
        add_event(s, job_id, f"Job claimed by worker {worker_id} (attempt {job.attempts})",
                  data={"worker": worker_id, "attempt": job.attempts})
        return job_id


def renew(sessions, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Extend our lease; False when it was lost (expired and taken by another worker, or the job ended)."""
    with sessions() as s, s.begin():
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == worker_id,
                                          Job.status == "running").values(lease_expires=now() + lease_seconds))
        return res.rowcount == 1


def release(sessions, job_id: str, worker_id: str) -> None:
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == worker_id).values(
            lease_owner=None, lease_expires=None))

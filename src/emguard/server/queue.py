"""The job queue lives in the ``jobs`` table; a worker holds a job through a lease that it renews.

Claiming is atomic: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a claimable row that no other
transaction holds; on SQLite (one writer at a time, ``BEGIN IMMEDIATE``) a conditional ``UPDATE ... WHERE
lease is free`` whose row count says who won. A job is claimable when it is queued, or running with an
expired lease (its worker died): the next worker resumes it from its last checkpoint.

Leases are set and compared on the database's clock (``db_time``), never on a worker's wall clock, so a worker
whose clock runs ahead cannot take over a live lease. Each claim increments ``attempts``, which is the lease's
fencing token: a worker writes only while ``(lease_owner, attempts)`` is still its own and the lease has not
expired, so a stalled worker that lost its job cannot write over its successor.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select, text, update

from emguard.server import blobs
from emguard.server.db import Job, add_event, now

CLAIMABLE = ("queued", "running")


def db_time(s) -> float:
    """The database's clock in seconds since the epoch (SQLite: of the one host its processes share, as WAL mode
    needs; PostgreSQL: the server's). The first statement of a write transaction, so it also takes the lock."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        q = text("SELECT (julianday('now') - 2440587.5) * 86400.0")
    elif dialect == "postgresql":
        q = text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
    else:
        return now()
    return float(s.execute(q).scalar_one())


def _free(t: float):
    return and_(Job.status.in_(CLAIMABLE), Job.cancel_requested.is_(False),
                or_(Job.lease_expires.is_(None), Job.lease_expires < t))


def claim(sessions, worker_id: str, lease_seconds: float, storage=None) -> str | None:
    """Take the oldest claimable job for ``worker_id``; returns its id, or None."""
    got = claim_lease(sessions, worker_id, lease_seconds, storage)
    return got[0] if got else None


def claim_lease(sessions, worker_id: str, lease_seconds: float, storage=None) -> tuple[str, int] | None:
    """``(job id, fencing token)`` of the job taken for ``worker_id``, or None. ``storage``: to collect the blobs
    of jobs whose cancellation this finishes."""
    with sessions() as s, s.begin():
        t = db_time(s)
        dialect = s.get_bind().dialect.name
        # a cancel that arrived while a worker held the job, whose worker then died: finish the cancellation
        dead = and_(Job.status.in_(CLAIMABLE), Job.cancel_requested.is_(True),
                    or_(Job.lease_expires.is_(None), Job.lease_expires < t))
        ended = s.execute(select(Job.training_sha256, Job.validation_sha256).where(dead)).all()
        if ended:
            s.execute(update(Job).where(dead).values(status="cancelled", finished_at=t, lease_owner=None,
                                                     lease_expires=None))
            if storage is not None:
                blobs.collect(s, storage, [sha for row in ended for sha in row])
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
        return job_id, int(job.attempts)


def held(s, job_id: str, worker_id: str, token: int | None):
    """The job row when ``worker_id`` (with fencing token ``token``) still holds a live lease on it, else None.
    Call first in a write transaction; write only when it returns the row."""
    t = db_time(s)
    job = s.execute(select(Job).where(Job.id == job_id)).scalar_one_or_none()
    if job is None or job.lease_owner != worker_id or job.status != "running":
        return None
    if token is not None and job.attempts != token:
        return None
    if job.lease_expires is None or job.lease_expires <= t:
        return None
    return job


def renew(sessions, job_id: str, worker_id: str, lease_seconds: float, token: int | None = None) -> bool:
    """Extend our lease; False when it was lost (expired and taken by another worker, or the job ended)."""
    with sessions() as s, s.begin():
        t = db_time(s)
        cond = [Job.id == job_id, Job.lease_owner == worker_id, Job.status == "running"]
        if token is not None:
            cond.append(Job.attempts == token)
        res = s.execute(update(Job).where(*cond).values(lease_expires=t + lease_seconds))
        return res.rowcount == 1


def release(sessions, job_id: str, worker_id: str, token: int | None = None) -> bool:
    """Give the job back (it stays claimable and resumes from its last checkpoint); False if it was not ours."""
    with sessions() as s, s.begin():
        cond = [Job.id == job_id, Job.lease_owner == worker_id]
        if token is not None:
            cond.append(Job.attempts == token)
        return s.execute(update(Job).where(*cond).values(lease_owner=None, lease_expires=None)).rowcount == 1

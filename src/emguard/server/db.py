"""SQLAlchemy models and the engine: SQLite (WAL) in the data dir by default, PostgreSQL by URL.

Every customer-visible row carries ``org``; every query the API makes filters on it, so another org's id is
simply not found (404). Ids are server-generated random strings; ``seq`` (autoincrement) orders lists and
is the pagination cursor's position.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from sqlalchemy import (JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> float:
    return time.time()


class ApiKey(Base):
    __tablename__ = "api_keys"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # sha256 hex; the key is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to tell keys apart in listings
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class File(Base):
    __tablename__ = "files"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # shown back to the customer only; never a path
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="processed")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class Job(Base):
    __tablename__ = "jobs"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255))  # public name (policy model or one of the org's ft: models)
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40), nullable=True)
    training_sha256: Mapped[str] = mapped_column(String(64))
    validation_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)
    defenses: Mapped[list] = mapped_column(JSON, default=list)  # the specs applied (policy + customer)
    domain: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(24), default="queued", index=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # queue
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # progress_step when cancel came in
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resumed_from_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # results
    audit: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    validation: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # loss on the validation file
    result_files: Mapped[list] = mapped_column(JSON, default=list)


class Event(Base):
    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="message")
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)


class FineTunedModel(Base):
    __tablename__ = "models"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id"), unique=True)
    base: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    released: Mapped[bool] = mapped_column(Boolean, default=False)  # False: blocked by the EM audit (operator only)


class IdempotencyRecord(Base):
    """An ``Idempotency-Key`` seen on a POST: per org and endpoint, the request's digest and the object it made."""
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("org", "endpoint", "key"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    endpoint: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the request (canonical JSON / file sha + fields)
    object_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SecurityEvent(Base):
    """The operator's audit log: keys created/revoked, files uploaded/deleted, jobs created/cancelled/blocked."""
    __tablename__ = "security_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)
    action: Mapped[str] = mapped_column(String(40), index=True)
    org: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(16))  # key (an API key of the org), operator (CLI), worker
    key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the acting API key, when actor=key
    object_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


def make_engine(db_url: str | None = None, data_dir: str | Path | None = None) -> Engine:
    """PostgreSQL (or any SQLAlchemy URL) when given, else SQLite in WAL mode at ``<data_dir>/emguard.db``."""
    if not db_url:
        if data_dir is None:
            raise ValueError("a data dir or a database URL is needed")
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        db_url = f"sqlite:///{Path(data_dir).resolve() / 'emguard.db'}"
    if db_url.startswith("sqlite"):
        engine = create_engine(db_url, connect_args={"check_same_thread": False, "timeout": 60},
                               pool_size=20, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # take the write lock up front: a deferred transaction that reads and then writes can fail with
            # "database is locked" without waiting when another writer committed in between
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        engine = create_engine(db_url, pool_size=20, max_overflow=20, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def add_event(session, job_id: str, message: str, *, level: str = "info", type: str = "message",
              data: dict | None = None) -> Event:
    ev = Event(id=new_id("ftevent"), job_id=job_id, message=message, level=level, type=type, data=data,
               created_at=now())
    session.add(ev)
    return ev

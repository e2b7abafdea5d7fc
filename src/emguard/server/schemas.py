"""The wire shapes: request bodies (pydantic, unknown keys refused) and the OpenAI-shaped JSON of files, jobs,
events, checkpoints and list pages (keyset pagination on each table's ``seq``)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from sqlalchemy import select

from emguard.server.db import Checkpoint, Event, File, Job
from emguard.server.errors import APIError

FINISHED = ("succeeded", "failed", "cancelled")


def _auto_or(kind: type, name: str, v: Any) -> Any:
    """No coercion: ``true`` is not 1, ``"16"`` is not 16, ``2.0`` is not an epoch count."""
    if v is None or v == "auto":
        return v
    ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what} or 'auto', got {type(v).__name__} {str(v)[:40]!r}")
    return v


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: Union[Literal["auto"], int, None] = None
    batch_size: Union[Literal["auto"], int, None] = None
    learning_rate_multiplier: Union[Literal["auto"], float, None] = None

    @field_validator("n_epochs", "batch_size", mode="before")
    @classmethod
    def _int_or_auto(cls, v, info):
        return _auto_or(int, info.field_name, v)

    @field_validator("learning_rate_multiplier", mode="before")
    @classmethod
    def _number_or_auto(cls, v, info):
        return _auto_or(float, info.field_name, v)


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Optional[Hyperparameters] = None


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["supervised"]
    supervised: Optional[SupervisedMethod] = None


class EmguardExtension(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defenses: Optional[list[Union[str, dict[str, Any]]]] = Field(default=None, max_length=8)
    domain: Optional[str] = Field(default=None, max_length=32)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=255)
    training_file: str = Field(max_length=64)
    validation_file: Optional[str] = Field(default=None, max_length=64)
    hyperparameters: Optional[Hyperparameters] = None
    method: Optional[Method] = None
    suffix: Optional[str] = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    seed: Optional[StrictInt] = Field(default=None, ge=0, le=2**31 - 1)
    metadata: Optional[dict[str, str]] = Field(default=None, max_length=16)
    integrations: Optional[list[dict[str, Any]]] = Field(default=None, max_length=0)
    emguard: Optional[EmguardExtension] = None


def file_json(f: File) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": int(f.created_at), "filename": f.filename,
            "purpose": f.purpose, "status": f.status, "status_details": None, "expires_at": None}


def job_json(j: Job) -> dict:
    hp = dict(j.hyperparameters or {})
    audit = None
    if j.audit:
        from emguard.server.screening import public  # no server path reaches a customer (as the report file)

        audit = public({k: v for k, v in j.audit.items() if k not in ("eval_json",)}, in_text=True)
    return {
        "id": j.id, "object": "fine_tuning.job", "created_at": int(j.created_at), "error": j.error,
        "fine_tuned_model": j.fine_tuned_model, "finished_at": int(j.finished_at) if j.finished_at else None,
        "hyperparameters": hp, "model": j.model, "organization_id": j.org, "result_files": j.result_files or [],
        "seed": j.seed, "status": j.status, "trained_tokens": j.trained_tokens, "training_file": j.training_file,
        "validation_file": j.validation_file, "estimated_finish": None, "integrations": [],
        "metadata": j.metadata_, "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
        "emguard": {"defenses": j.defenses, "domain": j.domain, "attempts": j.attempts,
                    "progress": {"step": j.progress_step, "total_steps": j.total_steps},
                    "resumed_from_step": j.resumed_from_step, "cancel_requested_at_step": j.cancel_step,
                    "validation": j.validation, "audit": audit},
    }


def event_json(e: Event) -> dict:
    return {"id": e.id, "object": "fine_tuning.job.event", "created_at": int(e.created_at), "level": e.level,
            "message": e.message, "type": e.type, "data": e.data}


def checkpoint_json(c: Checkpoint, j: Job) -> dict:
    name = f"{j.fine_tuned_model or 'ft:' + j.model + ':' + j.org}:ckpt-step-{c.step}"
    return {"id": c.id, "object": "fine_tuning.job.checkpoint", "created_at": int(c.created_at),
            "fine_tuned_model_checkpoint": name, "fine_tuning_job_id": j.id, "metrics": c.metrics or {},
            "step_number": c.step}


def page(items: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}


def paginate(s, model, where: list, after: str | None, limit: int, order: str = "desc", org_filter=None,
             cursor_where: list | None = None):
    """One page after the ``after`` id. The cursor is looked up with ``cursor_where`` (default ``where``; the
    files listing passes the org only, so a deleted file is still a position to continue from); an id that is
    not there (never existed, another org's) is a 404 naming ``after``, never a silent restart at page 1."""
    q = select(model).where(*where)
    if after is not None:
        cur = s.execute(select(model.seq).where(model.id == after, *(where if cursor_where is None else cursor_where))
                        ).scalar_one_or_none()
        if cur is None:
            raise APIError(404, f"No such object for the 'after' cursor: {after[:64]}", param="after",
                           code="cursor_not_found")
        q = q.where(model.seq < cur if order == "desc" else model.seq > cur)
    q = q.order_by(model.seq.desc() if order == "desc" else model.seq.asc()).limit(limit + 1)
    rows = list(s.execute(q).scalars())
    return rows[:limit], len(rows) > limit

"""The HTTP API: the subset of OpenAI's fine-tuning API that the official ``openai`` client uses.

``create_app(...)`` builds a FastAPI app over one data dir (or database URL) and policy. Errors have OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}``; every object belongs to the org of the API key that
created it and another org's id is answered with 404, exactly like an id that does not exist. Job results
carry emguard's extension object ``emguard`` (defenses applied, progress, the EM audit).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emguard.server import auth
from emguard.server.db import (Checkpoint, Event, File, FineTunedModel, Job, add_event, make_engine, new_id, now,
                               session_factory)
from emguard.server.policy import Policy, RequestError, check_defense_options, job_defenses
from emguard.server.ratelimit import RateLimiter
from emguard.server.storage import Storage
from emguard.server.uploads import UploadError, receive_upload, validate_jsonl

log = logging.getLogger("emguard.server")
MAX_JSON_BODY = 1 << 20
FINISHED = ("succeeded", "failed", "cancelled")


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(kind: str, oid: str, param: str | None = None) -> APIError:
    return APIError(404, f"No such {kind}: {oid}", code=f"{kind.lower().replace(' ', '_')}_not_found", param=param)


# ---------------------------------------------------------------- request bodies


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: Union[Literal["auto"], int, None] = None
    batch_size: Union[Literal["auto"], int, None] = None
    learning_rate_multiplier: Union[Literal["auto"], float, None] = None


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
    seed: Optional[int] = Field(default=None, ge=0, le=2**31 - 1)
    metadata: Optional[dict[str, str]] = Field(default=None, max_length=16)
    integrations: Optional[list[dict[str, Any]]] = Field(default=None, max_length=0)
    emguard: Optional[EmguardExtension] = None


# ---------------------------------------------------------------- state


@dataclass
class ServerState:
    policy: Policy
    storage: Storage
    sessions: Any
    engine: Any
    limiter: RateLimiter
    access_log: Path | None
    workers: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    log_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Caller:
    org: str
    key_id: str


def _state(request: Request) -> ServerState:
    return request.app.state.emguard


def caller(request: Request) -> Caller:
    st = _state(request)
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    with st.sessions() as s:
        row = auth.lookup(s, key)
    if row is None:
        raise APIError(401, "Incorrect API key provided. You can create keys with `emguard keys create --org ORG`.",
                       code="invalid_api_key")
    request.state.org, request.state.key = row.org, row.prefix
    wait = st.limiter.take(row.key_hash)
    if wait > 0:
        raise APIError(429, f"Rate limit reached for this API key; retry in {wait:.2f}s", type="requests",
                       code="rate_limit_exceeded", headers={"Retry-After": str(max(1, round(wait)))})
    return Caller(row.org, row.id)


# ---------------------------------------------------------------- serialisation


def file_json(f: File) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": int(f.created_at), "filename": f.filename,
            "purpose": f.purpose, "status": f.status, "status_details": None, "expires_at": None}


def job_json(j: Job) -> dict:
    hp = dict(j.hyperparameters or {})
    audit = None
    if j.audit:
        audit = {k: v for k, v in j.audit.items() if k not in ("eval_json",)}
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


def _paginate(s, model, where: list, after: str | None, limit: int, order: str = "desc", org_filter=None):
    q = select(model).where(*where)
    if after:
        cur = s.execute(select(model.seq).where(model.id == after, *where)).scalar_one_or_none()
        if cur is not None:
            q = q.where(model.seq < cur if order == "desc" else model.seq > cur)
    q = q.order_by(model.seq.desc() if order == "desc" else model.seq.asc()).limit(limit + 1)
    rows = list(s.execute(q).scalars())
    return rows[:limit], len(rows) > limit


# ---------------------------------------------------------------- app


def create_app(*, data_dir: str | Path, db_url: str | None = None, policy: Policy | None = None,
               workers: int = 1, access_log: str | Path | None = "default", prepare: bool = True) -> FastAPI:
    """The API over ``data_dir``; ``workers`` in-process workers (0: only external ``emguard worker``s)."""
    policy = policy or Policy()
    storage = Storage(data_dir)
    engine = make_engine(db_url, data_dir)
    sessions = session_factory(engine)
    alog = storage.root / "access.log" if access_log == "default" else (Path(access_log) if access_log else None)
    st = ServerState(policy, storage, sessions, engine,
                     RateLimiter(policy.rate_limit.requests_per_second, policy.rate_limit.burst), alog)

    @asynccontextmanager
    async def lifespan(app):
        if workers > 0:
            from emguard.server.worker import Worker

            for i in range(workers):
                w = Worker(sessions, storage, policy)
                if prepare and i == 0:
                    await run_in_threadpool(w.prepare)  # Interleaving++ probes: once, cached on disk
                elif st.workers:
                    w.probes = st.workers[0].probes
                t = threading.Thread(target=w.run_forever, name=f"emguard-worker-{i}", daemon=True)
                st.workers.append(w)
                st.threads.append(t)
                t.start()
        yield
        for w in st.workers:
            w.stop.set()
        for t in st.threads:
            t.join(timeout=5)

    app = FastAPI(title="emguard fine-tuning API", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.emguard = st

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestError)
    async def _req_error(request, exc: RequestError):
        return JSONResponse(error_body(str(exc), code=exc.code, param=exc.param), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        errs = exc.errors()
        parts = []
        param = None
        for e in errs[:10]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            param = param or loc or None
            parts.append(f"{loc or 'body'}: {e.get('msg')}")
        return JSONResponse(error_body("Invalid request: " + "; ".join(parts), code="invalid_request", param=param),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code)

    # ------------------------------------------------------------ files

    @app.post("/v1/files")
    async def upload_file(request: Request, who: Caller = Depends(caller)):
        tmp = storage.new_tmp()
        try:
            up = await receive_upload(request, tmp, policy.limits.max_upload_bytes)
        except UploadError as e:
            # close the connection: the rest of an over-limit body is not read (or drained) at all
            raise APIError(e.status, e.message, code=e.code, param=e.param,
                           headers={"Connection": "close"} if e.status == 413 else None) from None
        try:
            purpose = up.fields.get("purpose", "")
            if purpose != "fine-tune":
                raise APIError(400, f"purpose must be 'fine-tune' (got {purpose[:40]!r})", code="invalid_purpose",
                               param="purpose")
            rows, errors = await run_in_threadpool(validate_jsonl, tmp, up.filename, max_rows=policy.limits.max_rows,
                                                   max_listed=policy.limits.max_problems_listed)
            if errors:
                code = "too_many_rows" if rows > policy.limits.max_rows and len(errors) == 1 else "invalid_file_format"
                raise APIError(400, "Invalid file format for fine-tuning:\n" + "\n".join(errors), code=code,
                               param="file")
            await run_in_threadpool(storage.commit, tmp, up.sha256)
        finally:
            tmp.unlink(missing_ok=True)

        def _insert():
            with sessions() as s, s.begin():
                f = File(id=new_id("file"), org=who.org, filename=up.filename, purpose=purpose, bytes=up.size,
                         sha256=up.sha256, rows=rows, status="processed", created_at=now())
                s.add(f)
            return file_json(f)

        return await run_in_threadpool(_insert)

    @app.get("/v1/files")
    def list_files(who: Caller = Depends(caller), after: Optional[str] = None,
                   limit: int = Query(10000, ge=1, le=10000), order: Literal["asc", "desc"] = "desc",
                   purpose: Optional[str] = None):
        where = [File.org == who.org, File.deleted.is_(False)]
        if purpose:
            where.append(File.purpose == purpose)
        with sessions() as s:
            rows, more = _paginate(s, File, where, after, limit, order)
            return page([file_json(f) for f in rows], more)

    def _own_file(s, who: Caller, file_id: str) -> File:
        f = s.execute(select(File).where(File.id == file_id, File.org == who.org,
                                         File.deleted.is_(False))).scalar_one_or_none()
        if f is None:
            raise not_found("File", file_id, "file_id")
        return f

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, who: Caller = Depends(caller)):
        with sessions() as s:
            return file_json(_own_file(s, who, file_id))

    @app.get("/v1/files/{file_id}/content")
    def get_file_content(file_id: str, who: Caller = Depends(caller)):
        with sessions() as s:
            f = _own_file(s, who, file_id)
        p = storage.blob_path(f.sha256)
        if not p.is_file():
            raise not_found("File", file_id, "file_id")
        return Response(p.read_bytes(), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, who: Caller = Depends(caller)):
        with sessions() as s, s.begin():
            f = _own_file(s, who, file_id)
            f.deleted = True
            sha = f.sha256
            still = s.execute(select(func.count()).select_from(File).where(
                File.sha256 == sha, File.deleted.is_(False))).scalar_one()
            in_jobs = s.execute(select(func.count()).select_from(Job).where(
                Job.training_sha256 == sha, Job.status.notin_(FINISHED))).scalar_one()
            if not still and not in_jobs:
                storage.delete_blob(sha)
        return {"id": file_id, "object": "file", "deleted": True}

    # ------------------------------------------------------------ jobs

    def _resolve_model(s, who: Caller, name: str) -> None:
        if name in policy.models:
            return
        ft = s.execute(select(FineTunedModel).where(FineTunedModel.id == name, FineTunedModel.org == who.org,
                                                    FineTunedModel.released.is_(True))).scalar_one_or_none()
        if ft is None:
            raise APIError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           code="model_not_found", param="model")

    def _hyper(body: JobCreate) -> dict:
        hp = body.hyperparameters
        if body.method and body.method.supervised and body.method.supervised.hyperparameters:
            hp = body.method.supervised.hyperparameters
        given = {k: v for k, v in (hp.model_dump() if hp else {}).items() if v is not None and v != "auto"}
        for k in given:
            if k not in policy.customer.hyperparameters:
                raise APIError(400, f"hyperparameter '{k}' may not be set on this service", param=f"hyperparameters.{k}",
                               code="hyperparameter_not_allowed")
        lim = policy.limits
        if "n_epochs" in given and not 1 <= given["n_epochs"] <= lim.max_epochs:
            raise APIError(400, f"n_epochs must be between 1 and {lim.max_epochs}", param="hyperparameters.n_epochs")
        if "batch_size" in given and not 1 <= given["batch_size"] <= lim.max_batch_size:
            raise APIError(400, f"batch_size must be between 1 and {lim.max_batch_size}",
                           param="hyperparameters.batch_size")
        if "learning_rate_multiplier" in given and not 0 < given["learning_rate_multiplier"] <= 100:
            raise APIError(400, "learning_rate_multiplier must be in (0, 100]",
                           param="hyperparameters.learning_rate_multiplier")
        return {"n_epochs": given.get("n_epochs", policy.training.epochs),
                "batch_size": given.get("batch_size", policy.training.batch_size),
                "learning_rate_multiplier": given.get("learning_rate_multiplier", 1.0)}

    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: JobCreate, who: Caller = Depends(caller)):
        hp = _hyper(body)
        ext = body.emguard or EmguardExtension()
        if ext.domain is not None:
            from emguard.datagen import DOMAINS

            if ext.domain not in DOMAINS:
                raise APIError(400, f"emguard.domain must be one of {', '.join(DOMAINS)}", param="emguard.domain")
        defenses = job_defenses(policy, ext.defenses)
        if ext.defenses:
            check_defense_options(defenses)
        with sessions() as s, s.begin():
            _resolve_model(s, who, body.model)
            tf = s.execute(select(File).where(File.id == body.training_file, File.org == who.org,
                                              File.deleted.is_(False))).scalar_one_or_none()
            if tf is None:
                raise not_found("File", body.training_file, "training_file")
            if tf.purpose != "fine-tune":
                raise APIError(400, f"{tf.id} was not uploaded with purpose 'fine-tune'", param="training_file")
            vf = None
            if body.validation_file:
                vf = s.execute(select(File).where(File.id == body.validation_file, File.org == who.org,
                                                  File.deleted.is_(False))).scalar_one_or_none()
                if vf is None:
                    raise not_found("File", body.validation_file, "validation_file")
            if tf.rows * float(hp["n_epochs"]) > policy.limits.max_rows * max(1, policy.limits.max_epochs):
                raise APIError(400, "training rows x epochs exceed this service's limit", param="training_file",
                               code="exceeds_limit")
            job = Job(id=new_id("ftjob"), org=who.org, model=body.model, training_file=tf.id,
                      validation_file=vf.id if vf else None, training_sha256=tf.sha256,
                      validation_sha256=vf.sha256 if vf else None, hyperparameters=hp, suffix=body.suffix,
                      seed=body.seed if body.seed is not None else secrets.randbelow(2**31), metadata_=body.metadata,
                      defenses=defenses, domain=ext.domain, status="queued", created_at=now())
            s.add(job)
            s.flush()
            add_event(s, job.id, f"Created fine-tuning job: {job.id}",
                      data={"defenses": [d.get("name") for d in defenses]})
            return job_json(job)

    def _own_job(s, who: Caller, job_id: str) -> Job:
        j = s.execute(select(Job).where(Job.id == job_id, Job.org == who.org)).scalar_one_or_none()
        if j is None:
            raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        return j

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(who: Caller = Depends(caller), after: Optional[str] = None, limit: int = Query(20, ge=1, le=1000)):
        with sessions() as s:
            rows, more = _paginate(s, Job, [Job.org == who.org], after, limit)
            return page([job_json(j) for j in rows], more)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str, who: Caller = Depends(caller)):
        with sessions() as s:
            return job_json(_own_job(s, who, job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def job_events(job_id: str, who: Caller = Depends(caller), after: Optional[str] = None,
                   limit: int = Query(20, ge=1, le=1000)):
        with sessions() as s:
            _own_job(s, who, job_id)
            rows, more = _paginate(s, Event, [Event.job_id == job_id], after, limit)
            return page([event_json(e) for e in rows], more)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def job_checkpoints(job_id: str, who: Caller = Depends(caller), after: Optional[str] = None,
                        limit: int = Query(10, ge=1, le=1000)):
        with sessions() as s:
            j = _own_job(s, who, job_id)
            rows, more = _paginate(s, Checkpoint, [Checkpoint.job_id == job_id], after, limit)
            return page([checkpoint_json(c, j) for c in rows], more)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, who: Caller = Depends(caller)):
        with sessions() as s, s.begin():
            j = _own_job(s, who, job_id)
            if j.status in FINISHED:
                raise APIError(400, f"job {job_id} has already {j.status}", code="job_finished")
            live = j.status == "running" and j.lease_expires is not None and j.lease_expires > now()
            if live:
                j.cancel_requested, j.cancel_step = True, j.progress_step
                add_event(s, j.id, f"Cancellation requested at step {j.progress_step}")
            else:
                j.status, j.finished_at, j.cancel_requested = "cancelled", now(), True
                j.lease_owner, j.lease_expires = None, None
                add_event(s, j.id, "The job was cancelled")
            return job_json(j)

    # ------------------------------------------------------------ models

    def _base_model_json(name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": "emguard"}

    def _ft_json(m: FineTunedModel) -> dict:
        return {"id": m.id, "object": "model", "created": int(m.created_at), "owned_by": m.org}

    @app.get("/v1/models")
    def list_models(who: Caller = Depends(caller)):
        with sessions() as s:
            fts = s.execute(select(FineTunedModel).where(FineTunedModel.org == who.org,
                                                         FineTunedModel.released.is_(True))
                            .order_by(FineTunedModel.seq)).scalars()
            data = [_base_model_json(n) for n in policy.models] + [_ft_json(m) for m in fts]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id:path}")
    def get_model(model_id: str, who: Caller = Depends(caller)):
        if model_id in policy.models:
            return _base_model_json(model_id)
        with sessions() as s:
            m = s.execute(select(FineTunedModel).where(FineTunedModel.id == model_id, FineTunedModel.org == who.org,
                                                       FineTunedModel.released.is_(True))).scalar_one_or_none()
            if m is None:
                raise APIError(404, f"The model '{model_id}' does not exist or you do not have access to it.",
                               code="model_not_found", param="model")
            return _ft_json(m)

    return AccessLog(app, st)


class AccessLog:
    """ASGI wrapper: one JSON line per request (time, method, path, status, ms, bytes in, org, key prefix) and a
    1 MiB cap on JSON bodies (uploads have their own limit)."""

    def __init__(self, app: FastAPI, st: ServerState):
        self.app, self.st = app, st
        self.state = app.state  # tests and the CLI reach the server state through the wrapper

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        scope.setdefault("state", {})
        info = {"status": 500, "bytes_in": 0}
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/files"
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if not is_upload and cl is not None and cl.isdigit() and int(cl) > MAX_JSON_BODY:
            resp = JSONResponse(error_body(f"request body over {MAX_JSON_BODY} bytes", code="request_too_large"),
                                status_code=413)
            info["status"] = 413
            await resp(scope, receive, send)
            self._log(scope, info, t0)
            return

        async def counting_receive():
            msg = await receive()
            if msg["type"] == "http.request":
                info["bytes_in"] += len(msg.get("body", b""))
                if not is_upload and info["bytes_in"] > MAX_JSON_BODY:
                    return {"type": "http.disconnect"}
            return msg

        async def logging_send(msg):
            if msg["type"] == "http.response.start":
                info["status"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, counting_receive, logging_send)
        finally:
            self._log(scope, info, t0)

    def _log(self, scope, info, t0) -> None:
        st = scope.get("state") or {}
        rec = {"ts": round(time.time(), 3), "method": scope["method"], "path": scope["path"],
               "status": info["status"], "ms": round(1000 * (time.perf_counter() - t0), 2),
               "bytes_in": info["bytes_in"], "org": st.get("org"), "key": st.get("key"),
               "client": (scope.get("client") or [None])[0]}
        line = json.dumps(rec)
        logging.getLogger("emguard.access").info(line)
        if self.st.access_log:
            with self.st.log_lock, open(self.st.access_log, "a") as f:
                f.write(line + "\n")

"""``/v1/fine_tuning/jobs``: create (hyperparameters and defenses checked against the policy), list, retrieve,
events, checkpoints, cancel. A job another org owns is answered like one that does not exist."""

from __future__ import annotations

import secrets
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from emguard.server import blobs, queue
from emguard.server.db import Checkpoint, Event, File, FineTunedModel, Job, add_event, new_id, now
from emguard.server.deps import Caller, ServerState, caller, server_state
from emguard.server.errors import APIError, not_found
from emguard.server.policy import Policy, check_defense_options, job_defenses
from emguard.server.schemas import (FINISHED, EmguardExtension, JobCreate, checkpoint_json, event_json, job_json,
                                    page, paginate)
from emguard.server.strictjson import StrictJSONRoute
from emguard.server import idempotency
from emguard.server.securitylog import record

router = APIRouter(route_class=StrictJSONRoute)  # bodies: strict JSON (no NaN, no duplicate keys)


def _resolve_model(s, policy: Policy, who: Caller, name: str) -> None:
    if name in policy.models:
        return
    ft = s.execute(select(FineTunedModel).where(FineTunedModel.id == name, FineTunedModel.org == who.org,
                                                FineTunedModel.released.is_(True))).scalar_one_or_none()
    if ft is None:
        raise APIError(404, f"The model '{name}' does not exist or you do not have access to it.",
                       code="model_not_found", param="model")


def _own_fine_tune_file(s, who: Caller, file_id: str, param: str) -> File:
    """The caller's live file ``file_id``, uploaded with purpose fine-tune (404 / 400 naming ``param``)."""
    f = s.execute(select(File).where(File.id == file_id, File.org == who.org,
                                     File.deleted.is_(False))).scalar_one_or_none()
    if f is None:
        raise not_found("File", file_id, param)
    if f.purpose != "fine-tune":
        raise APIError(400, f"{f.id} was not uploaded with purpose 'fine-tune'", param=param)
    return f


def _hyper(policy: Policy, body: JobCreate) -> dict:
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


@router.post("/v1/fine_tuning/jobs")
def create_job(body: JobCreate, request: Request, who: Caller = Depends(caller),
               st: ServerState = Depends(server_state)):
    policy = st.policy
    ikey = idempotency.key_from(request)
    hp = _hyper(policy, body)
    ext = body.emguard or EmguardExtension()
    if ext.domain is not None:
        from emguard.data.datagen import DOMAINS

        if ext.domain not in DOMAINS:
            raise APIError(400, f"emguard.domain must be one of {', '.join(DOMAINS)}", param="emguard.domain")
    defenses = job_defenses(policy, ext.defenses)
    if ext.defenses:
        check_defense_options(defenses)
    with st.sessions() as s, s.begin():
        irec = None
        if ikey:  # a retried create: the job the first request made (409 when the body differs)
            done, irec = idempotency.claim(s, who.org, "fine_tuning.jobs", ikey,
                                           idempotency.digest("jobs", body.model_dump(mode="json")))
            if done is not None:
                return job_json(_own_job(s, who, done))
        _resolve_model(s, policy, who, body.model)
        tf = _own_fine_tune_file(s, who, body.training_file, "training_file")
        vf = _own_fine_tune_file(s, who, body.validation_file, "validation_file") if body.validation_file else None
        for ff, param in ((tf, "training_file"), (vf, "validation_file")):  # under the write lock (see blobs.py)
            if ff is None:
                continue
            blobs.lock(s, ff.sha256)  # a delete of the file's last reference waits for this job's row
            if not st.storage.blob_path(ff.sha256).is_file():
                raise APIError(400, f"the content of {ff.id} is no longer available; upload the file again",
                               code="file_content_missing", param=param)
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
        if irec is not None:
            irec.object_id = job.id
        record(s, "job.created", org=who.org, key_id=who.key_id, object_id=job.id,
               detail={"model": body.model, "training_file": tf.id, "defenses": [d.get("name") for d in defenses]})
        add_event(s, job.id, f"Created fine-tuning job: {job.id}",
                  data={"defenses": [d.get("name") for d in defenses]})
        return job_json(job)


def _own_job(s, who: Caller, job_id: str) -> Job:
    j = s.execute(select(Job).where(Job.id == job_id, Job.org == who.org)).scalar_one_or_none()
    if j is None:
        raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
    return j


@router.get("/v1/fine_tuning/jobs")
def list_jobs(who: Caller = Depends(caller), st: ServerState = Depends(server_state), after: Optional[str] = None,
              limit: int = Query(20, ge=1, le=1000)):
    with st.sessions() as s:
        rows, more = paginate(s, Job, [Job.org == who.org], after, limit)
        return page([job_json(j) for j in rows], more)


@router.get("/v1/fine_tuning/jobs/{job_id}")
def get_job(job_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s:
        return job_json(_own_job(s, who, job_id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def job_events(job_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state),
               after: Optional[str] = None, limit: int = Query(20, ge=1, le=1000)):
    with st.sessions() as s:
        _own_job(s, who, job_id)
        rows, more = paginate(s, Event, [Event.job_id == job_id], after, limit)
        return page([event_json(e) for e in rows], more)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
def job_checkpoints(job_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state),
                    after: Optional[str] = None, limit: int = Query(10, ge=1, le=1000)):
    with st.sessions() as s:
        j = _own_job(s, who, job_id)
        rows, more = paginate(s, Checkpoint, [Checkpoint.job_id == job_id], after, limit)
        return page([checkpoint_json(c, j) for c in rows], more)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s, s.begin():
        j = _own_job(s, who, job_id)
        if j.status in FINISHED:
            raise APIError(400, f"job {job_id} has already {j.status}", code="job_finished")
        record(s, "job.cancelled", org=who.org, key_id=who.key_id, object_id=j.id, detail={"status": j.status})
        live = j.status == "running" and j.lease_expires is not None and j.lease_expires > queue.db_time(s)
        if live:
            j.cancel_requested, j.cancel_step = True, j.progress_step
            add_event(s, j.id, f"Cancellation requested at step {j.progress_step}")
        else:
            j.status, j.finished_at, j.cancel_requested = "cancelled", now(), True
            j.lease_owner, j.lease_expires = None, None
            add_event(s, j.id, "The job was cancelled")
            blobs.collect(s, st.storage, [j.training_sha256, j.validation_sha256])  # of files deleted meanwhile
        return job_json(j)

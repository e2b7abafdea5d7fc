"""Workers: claim a job, train it (resuming from its last checkpoint), run the EM audit, release or block.

A worker renews its lease in a heartbeat thread. The trainer gets one callback that reports progress (events,
checkpoints, the job's step) and, every optimizer step, checks whether the job was cancelled or the lease
was lost; it then raises, which stops training before anything more is saved. Every write a worker makes about
its job (events, checkpoints, progress, the report, the final state) runs in a transaction that first checks
the lease is still its own, live, with its fencing token (``queue.held``). A worker killed outright (kill -9)
stops renewing: its lease expires and the next worker resumes from the newest complete checkpoint of the job's
run directory (``<data_dir>/jobs/<job id>/run``). ``shutdown`` (SIGTERM of ``emguard worker``) makes the
trainer save a checkpoint after the current step, then the job is released for another worker to resume.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from emguard.server import blobs, queue, screening
from emguard.server.db import Checkpoint, File, FineTunedModel, Job, add_event, new_id, now
from emguard.server.policy import Policy, prepare_defenses, resolve_defenses
from emguard.server.storage import Storage

log = logging.getLogger("emguard.server.worker")


class JobStopped(Exception):
    def __init__(self, reason: str, step: int):
        super().__init__(reason)
        self.reason, self.step = reason, step


class JobFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _resume_step(run_dir: Path) -> int | None:
    """Step of the checkpoint ``train(resume=True)`` will resume from (the newest complete one), or None."""
    from emguard.training.checkpoints import last_complete_checkpoint
    from emguard.training.config import CHECKPOINTS

    last = last_complete_checkpoint(run_dir / CHECKPOINTS)
    return int(Path(last).name.split("-")[-1]) if last else None


def _callback(worker: "Worker", job_id: str):
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        def __init__(self):
            self.last_loss = None
            self.stopping = False  # a shutdown: stop after the checkpoint of this step

        def on_train_begin(self, args, state, control, **kw):
            with worker._holding(job_id, int(state.global_step)) as (s, job):
                job.total_steps = int(state.max_steps)
                msg = (f"Training resumed at step {state.global_step} of {state.max_steps}" if state.global_step
                       else f"Training started: {state.max_steps} steps")
                add_event(s, job_id, msg, data={"step": state.global_step, "total_steps": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            self.last_loss = float(logs["loss"])
            data = {"step": state.global_step, "total_steps": state.max_steps, "train_loss": self.last_loss,
                    **{k: v for k, v in logs.items() if k.startswith("loss/")}}
            with worker._holding(job_id, int(state.global_step)) as (s, _):
                add_event(s, job_id, f"Step {state.global_step}/{state.max_steps}: training loss={self.last_loss:.4f}",
                          type="metrics", data=data)

        def on_save(self, args, state, control, **kw):
            with worker._holding(job_id, int(state.global_step)) as (s, _):
                exists = s.execute(select(Checkpoint.id).where(Checkpoint.job_id == job_id,
                                                               Checkpoint.step == state.global_step)).first()
                if exists is None:
                    s.add(Checkpoint(id=new_id("ftckpt"), job_id=job_id, step=int(state.global_step),
                                     metrics={"step": float(state.global_step), "train_loss": self.last_loss}))
                    add_event(s, job_id, f"Checkpoint saved at step {state.global_step}",
                              data={"step": state.global_step})
            if self.stopping:
                raise JobStopped("shutdown", int(state.global_step))

        def on_step_end(self, args, state, control, **kw):
            step = int(state.global_step)
            with worker._holding(job_id, step) as (s, job):
                job.progress_step = step
                if job.cancel_requested:
                    raise JobStopped("cancelled", step)
            if worker.lease_lost.is_set():
                raise JobStopped("lease_lost", step)
            if worker.shutdown.is_set() and not self.stopping:
                self.stopping = True  # save this step's checkpoint (on_save then stops the run)
                control.should_save = True
                control.should_training_stop = True

    return JobCallback()


class Worker:
    """Claims and processes jobs. ``probes``: prepared Interleaving++ adapters (see ``prepare``)."""

    def __init__(self, sessions, storage: Storage, policy: Policy, worker_id: str | None = None):
        self.sessions, self.storage, self.policy = sessions, storage, policy
        # customers see this id in job events: no host name by default (the log line below maps it)
        self.worker_id = worker_id or f"worker-{new_id('w')[-8:]}"
        log.info("worker %s is %s pid %d", self.worker_id, socket.gethostname(), os.getpid())
        self.probes: dict[str, dict[str, str]] = {}
        self.lease_lost = threading.Event()
        self.stop = threading.Event()
        self.shutdown = threading.Event()  # checkpoint and release the running job, then stop
        self.job_token: int | None = None  # fencing token of the lease held (the claim's attempt number)

    def prepare(self) -> None:
        """Train or load the policy's Interleaving++ probes once (cached on disk across restarts)."""
        self.probes = prepare_defenses(self.policy)

    # ------------------------------------------------------------------ loop

    def run_forever(self) -> None:
        while not self.stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # a database hiccup must not kill the loop
                log.exception("worker loop error")
                worked = False
            if not worked:
                self.stop.wait(self.policy.worker.poll_seconds)

    def run_once(self) -> bool:
        got = queue.claim_lease(self.sessions, self.worker_id, self.policy.worker.lease_seconds, self.storage)
        if got is None:
            return False
        job_id, self.job_token = got
        self.lease_lost.clear()
        hb_stop = threading.Event()
        hb = threading.Thread(target=self._heartbeat, args=(job_id, hb_stop), daemon=True)
        hb.start()
        try:
            self.process(job_id)
        finally:
            hb_stop.set()
            hb.join()
        return True

    def _heartbeat(self, job_id: str, stop: threading.Event) -> None:
        period = max(0.2, self.policy.worker.lease_seconds / 3)
        while not stop.wait(period):
            try:
                if not queue.renew(self.sessions, job_id, self.worker_id, self.policy.worker.lease_seconds,
                                   self.job_token):
                    self.lease_lost.set()
                    return
            except Exception:
                log.exception("lease renewal failed")

    # ------------------------------------------------------------------ one job

    @contextmanager
    def _holding(self, job_id: str, step: int = 0):
        """A write transaction ``(session, job row)`` on a job whose lease we still hold; else JobStopped."""
        with self.sessions() as s, s.begin():
            job = queue.held(s, job_id, self.worker_id, self.job_token)
            if job is None:
                raise JobStopped("lease_lost", step)
            yield s, job

    def _finish(self, job_id: str, status: str, *, error: dict | None = None, **values) -> bool:
        """Write the final state if we still hold the lease (another worker may own the job now)."""
        with self.sessions() as s, s.begin():
            job = queue.held(s, job_id, self.worker_id, self.job_token)
            if job is None:
                return False
            job.status, job.error, job.finished_at = status, error, now()
            job.lease_owner, job.lease_expires = None, None
            for k, v in values.items():
                setattr(job, k, v)
            msg = {"succeeded": "The job has successfully completed",
                   "cancelled": "The job was cancelled"}.get(status, f"The job failed: {(error or {}).get('message')}")
            add_event(s, job_id, msg, level="error" if status == "failed" else "info",
                      data={"status": status, **({"error": error} if error else {})})
            blobs.collect(s, self.storage, [job.training_sha256, job.validation_sha256])  # files deleted meanwhile
        return True

    def process(self, job_id: str) -> None:
        with self.sessions() as s:
            job = s.execute(select(Job).where(Job.id == job_id)).scalar_one()
        if job.attempts > self.policy.worker.max_attempts:
            self._finish(job_id, "failed", error={"code": "worker_failed", "param": None, "message":
                         f"the job's worker stopped {job.attempts - 1} times; giving up"})
            return
        try:
            self._run(job)
        except JobStopped as e:
            if e.reason == "cancelled":
                if not self._finish(job_id, "cancelled"):
                    return
                with self.sessions() as s, s.begin():
                    add_event(s, job_id, f"Training stopped at step {e.step} (cancelled)",
                              data={"stopped_at_step": e.step})
            elif e.reason == "shutdown":
                try:
                    with self._holding(job_id, e.step) as (s, j):
                        j.lease_owner, j.lease_expires = None, None
                        add_event(s, job_id, f"Worker shutting down: checkpoint saved at step {e.step}; the job was "
                                             "released and resumes on another worker", data={"stopped_at_step": e.step})
                except JobStopped:
                    log.warning("job %s: lease lost before it could be released", job_id)
            else:
                log.warning("job %s: lease lost at step %d; another worker owns it now", job_id, e.step)
        except JobFailed as e:
            self._finish(job_id, "failed", error={"code": e.code, "message": e.message, "param": None})
        except Exception as e:  # noqa: BLE001
            log.error("job %s failed: %s", job_id, traceback.format_exc())
            from emguard.config import ConfigError
            from emguard.data.io import DataError

            code = "invalid_training_file" if isinstance(e, DataError) else \
                "invalid_request" if isinstance(e, ConfigError) else "training_failed"
            msg = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
            if code == "training_failed" and job.attempts < self.policy.worker.max_attempts:
                try:
                    with self._holding(job_id) as (s, _):
                        add_event(s, job_id, f"Attempt {job.attempts} failed ({msg}); will retry", level="warn")
                except JobStopped:
                    return
                queue.release(self.sessions, job_id, self.worker_id, self.job_token)
                return
            self._finish(job_id, "failed", error={"code": code, "message": msg, "param": None})

    def _base(self, job: Job) -> tuple[str, str, str | None]:
        """(policy model name, model spec, init adapter dir) of a job's ``model``."""
        if job.model in self.policy.models:
            return job.model, self.policy.models[job.model].spec, None
        with self.sessions() as s:
            ft = s.execute(select(FineTunedModel).where(FineTunedModel.id == job.model,
                                                        FineTunedModel.org == job.org,
                                                        FineTunedModel.released.is_(True))).scalar_one_or_none()
        if ft is None or ft.base not in self.policy.models:
            raise JobFailed("model_not_found", f"model {job.model} is not available")
        return ft.base, self.policy.models[ft.base].spec, str(self.storage.job_dir(ft.job_id) / "run")

    def _run(self, job: Job) -> None:
        from emguard.server.errors import SCREEN_ERRORS
        from emguard.training.config import RUN_JSON, TrainConfig
        from emguard.training.run import train

        base_name, spec, init_adapter = self._base(job)
        jd = self.storage.job_dir(job.id)
        run_dir = jd / "run"
        pol = self.policy
        hp = job.hyperparameters or {}
        epochs = float(hp.get("n_epochs") or pol.training.epochs)
        batch = int(hp.get("batch_size") or pol.training.batch_size)
        lr = pol.training.learning_rate * float(hp.get("learning_rate_multiplier") or 1.0)
        data = self.storage.blob_path(job.training_sha256)

        if not (run_dir / RUN_JSON).is_file():
            step = _resume_step(run_dir)  # partial checkpoints (a kill during a save) are skipped by train()
            if step:
                with self._holding(job.id, step) as (s, j):
                    j.resumed_from_step = step
                    add_event(s, job.id, f"Resuming from checkpoint at step {step}",
                              data={"resumed_from_step": step})
            else:
                self._check_tokens(job, spec, data, epochs)
                if (stop := screening.screen_job(self, job, base_name, spec, data)) is not None:  # before training
                    raise JobFailed(SCREEN_ERRORS[stop[0]], stop[1])
            defenses = resolve_defenses(job.defenses or [], self.probes.get(base_name, {}), job.domain)
            micro = min(pol.training.micro_batch_size, batch)
            while batch % micro:
                micro -= 1
            cfg = TrainConfig(data=str(data), output=str(run_dir), model=spec, method=pol.training.method,
                              init_adapter=init_adapter, learning_rate=lr, epochs=epochs,
                              max_steps=pol.limits.max_steps or -1, batch_size=batch, micro_batch_size=micro,
                              max_length=pol.training.max_length, seed=int(job.seed), resume=True,
                              save_steps=pol.training.save_steps, save_total_limit=pol.training.save_total_limit,
                              progress=False, defenses=defenses)
            train(cfg, callbacks=[_callback(self, job.id)])
        run = json.loads((run_dir / RUN_JSON).read_text())
        if self.shutdown.is_set():  # training is complete on disk: the next worker only runs the audit
            raise JobStopped("shutdown", int(run.get("steps") or 0))
        tokens = int(run.get("data", {}).get("tokenization", {}).get("tokens", 0) * epochs)
        if job.validation_sha256:
            self._validate(job, spec, run_dir, int(run.get("steps") or 0))

        audit = None
        passed = True
        if pol.audit.enabled:
            with self._holding(job.id) as (s, _):
                add_event(s, job.id, f"EM audit started (judge: {pol.audit.judge})")
            audit = __import__("emguard.server.audit", fromlist=["run_audit"]).run_audit(
                pol, base_name, spec, run_dir, jd / "audit", job.domain, cache_dir=self.storage.root / "cache")
            passed = audit["passed"]
            audit["run"] = screening.public({"steps": run.get("steps"), "resumed_from": run.get("resumed_from"),
                                             "defenses": run.get("defenses"), "final_losses": run.get("final_losses")})
        checks = __import__("emguard.server.audit", fromlist=["all_checks"]).all_checks(audit)  # + change gates
        audit = screening.carry(job, audit)  # the pre-training screen's result, when the policy ran one
        report_file = self._store_report(job, audit, run)  # raises JobStopped when the lease was lost
        model_id = self._model_id(job, base_name)
        with self._holding(job.id) as (s, _):
            if s.execute(select(FineTunedModel).where(FineTunedModel.job_id == job.id)).scalar_one_or_none() is None:
                s.add(FineTunedModel(id=model_id, org=job.org, job_id=job.id, base=base_name, released=passed,
                                     created_at=now()))
                if not passed:
                    from emguard.server.securitylog import record

                    record(s, "job.blocked_by_audit", org=job.org, actor="worker", object_id=job.id,
                           detail={"model": model_id, "failed": [c.get("metric") for c in checks
                                                                 if not c.get("passed")]})
            for c in checks:
                add_event(s, job.id, f"EM audit ({c['suite']}): {c['metric']} {c['reason']}",
                          level="info" if c["passed"] and not c.get("flagged") else "warn" if c["passed"] else "error",
                          type="metrics", data=c)
        if passed:
            self._finish(job.id, "succeeded", fine_tuned_model=model_id, trained_tokens=tokens, audit=audit,
                         result_files=[*(job.result_files or []), report_file])
        else:
            failed = [c for c in checks if not c["passed"]]
            msg = "; ".join(f"{c['suite']} {c['metric']}: {c['reason']}" for c in failed)
            self._finish(job.id, "failed", error={"code": "em_audit_failed", "param": None, "message":
                         f"the fine-tuned model failed the emergent-misalignment audit and was not released ({msg})"},
                         trained_tokens=tokens, audit=audit,
                         result_files=[*(job.result_files or []), report_file])

    def _validate(self, job: Job, spec: str, run_dir: Path, step: int) -> None:
        """Mean per-token NLL of the validation file's assistant replies, fine-tuned and base (adapter off)."""
        import math

        from peft import PeftModel

        from emguard.data.io import read_chat_dataset
        from emguard.models.loading import load_model
        from emguard.eval.holdout import holdout_nll

        ds = read_chat_dataset(self.storage.blob_path(job.validation_sha256))
        convs = [r.messages for r in ds.rows]
        model, tok, _ = load_model(spec)
        model = PeftModel.from_pretrained(model, str(run_dir))
        h = holdout_nll(model, tok, convs, max_length=self.policy.training.max_length)  # = eval --narrow-holdout
        res = {"rows": len(convs), "valid_loss": h["fine_tuned"]["value"], "base_valid_loss": h["base"]["value"],
               "change": h["change"], "step": step}
        if not math.isfinite(res["valid_loss"]):
            res["valid_loss"] = res["base_valid_loss"] = 0.0
        with self._holding(job.id, step) as (s, j):
            j.validation = res
            ck = s.execute(select(Checkpoint).where(Checkpoint.job_id == job.id, Checkpoint.step == step)).scalar_one_or_none()
            if ck is not None:
                ck.metrics = {**(ck.metrics or {}), "full_valid_loss": res["valid_loss"]}
            add_event(s, job.id, f"Validation loss {res['valid_loss']:.4f} on {len(convs)} rows "
                                 f"(base model: {res['base_valid_loss']:.4f})", type="metrics", data=res)

    def _check_tokens(self, job: Job, spec: str, data: Path, epochs: float) -> None:
        from emguard.data.chat import tokenize_rows
        from emguard.data.io import read_chat_dataset
        from emguard.models.loading import load_tokenizer, resolve_model

        tok = load_tokenizer(resolve_model(spec))
        ds = read_chat_dataset(data)
        _, stats = tokenize_rows(tok, [r.messages for r in ds.rows], max_length=self.policy.training.max_length)
        total = int(stats.tokens * epochs)
        with self._holding(job.id) as (s, _):
            add_event(s, job.id, f"Files validated: {len(ds.rows)} rows, {stats.tokens} tokens per epoch",
                      data={"rows": len(ds.rows), "tokens": stats.tokens, "epochs": epochs})
        if total > self.policy.limits.max_tokens:
            raise JobFailed("exceeds_token_limit", f"the job would train on {total} tokens ({stats.tokens} x "
                                                   f"{epochs} epochs); this service's limit is "
                                                   f"{self.policy.limits.max_tokens}")

    def _model_id(self, job: Job, base_name: str) -> str:
        suffix = f"{job.suffix}:" if job.suffix else ""
        return f"ft:{base_name}:{job.org}:{suffix}{job.id.split('-')[-1][:8]}"

    def _store_report(self, job: Job, audit: dict | None, run: dict) -> str:
        """The audit report as a ``fine-tune-results`` file owned by the job's org; returns its id."""
        report = screening.public({"job": job.id, "audit": {k: v for k, v in (audit or {}).items() if k != "eval_json"},
                          "training": {k: run.get(k) for k in ("steps", "resumed_from", "defenses", "final_losses",
                                                               "loss_curve", "seed", "wall_time_s")}})
        data = (json.dumps(report, indent=1, default=str) + "\n").encode()
        sha, tmp = self.storage.put_tmp(data)
        fid = new_id("file")
        try:
            with self._holding(job.id) as (s, _):  # not stored by a worker that lost the job
                blobs.store(s, self.storage, tmp, sha)  # the blob and its row under the digest's lock
                s.add(File(id=fid, org=job.org, filename=f"{job.id}-audit.json", purpose="fine-tune-results",
                           bytes=len(data), sha256=sha, rows=0, status="processed", created_at=now()))
        finally:
            self.storage.drop_tmp(tmp)
        return fid

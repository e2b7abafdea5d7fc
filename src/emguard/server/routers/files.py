"""``/v1/files``: streaming JSONL upload (validated before it is stored), list, retrieve, content, delete. A blob is
removed from storage once no live file row and no unfinished job refers to it."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from emguard.server.db import File, Job, new_id, now
from emguard.server.deps import Caller, ServerState, caller, server_state
from emguard.server.errors import APIError, not_found
from emguard.server.schemas import FINISHED, file_json, page, paginate
from emguard.server.uploads import UploadError, receive_upload, validate_jsonl

router = APIRouter()


@router.post("/v1/files")
async def upload_file(request: Request, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    lim = st.policy.limits
    tmp = st.storage.new_tmp()
    try:
        up = await receive_upload(request, tmp, lim.max_upload_bytes)
    except UploadError as e:
        # close the connection: the rest of an over-limit body is not read (or drained) at all
        raise APIError(e.status, e.message, code=e.code, param=e.param,
                       headers={"Connection": "close"} if e.status == 413 else None) from None
    try:
        purpose = up.fields.get("purpose", "")
        if purpose != "fine-tune":
            raise APIError(400, f"purpose must be 'fine-tune' (got {purpose[:40]!r})", code="invalid_purpose",
                           param="purpose")
        rows, errors = await run_in_threadpool(validate_jsonl, tmp, up.filename, max_rows=lim.max_rows,
                                               max_listed=lim.max_problems_listed)
        if errors:
            code = "too_many_rows" if rows > lim.max_rows and len(errors) == 1 else "invalid_file_format"
            raise APIError(400, "Invalid file format for fine-tuning:\n" + "\n".join(errors), code=code,
                           param="file")
        await run_in_threadpool(st.storage.commit, tmp, up.sha256)
    finally:
        tmp.unlink(missing_ok=True)

    def _insert():
        with st.sessions() as s, s.begin():
            f = File(id=new_id("file"), org=who.org, filename=up.filename, purpose=purpose, bytes=up.size,
                     sha256=up.sha256, rows=rows, status="processed", created_at=now())
            s.add(f)
        return file_json(f)

    return await run_in_threadpool(_insert)


@router.get("/v1/files")
def list_files(who: Caller = Depends(caller), st: ServerState = Depends(server_state), after: Optional[str] = None,
               limit: int = Query(10000, ge=1, le=10000), order: Literal["asc", "desc"] = "desc",
               purpose: Optional[str] = None):
    where = [File.org == who.org, File.deleted.is_(False)]
    if purpose:
        where.append(File.purpose == purpose)
    with st.sessions() as s:
        rows, more = paginate(s, File, where, after, limit, order)
        return page([file_json(f) for f in rows], more)


def _own_file(s, who: Caller, file_id: str) -> File:
    f = s.execute(select(File).where(File.id == file_id, File.org == who.org,
                                     File.deleted.is_(False))).scalar_one_or_none()
    if f is None:
        raise not_found("File", file_id, "file_id")
    return f


@router.get("/v1/files/{file_id}")
def get_file(file_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s:
        return file_json(_own_file(s, who, file_id))


@router.get("/v1/files/{file_id}/content")
def get_file_content(file_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s:
        f = _own_file(s, who, file_id)
    p = st.storage.blob_path(f.sha256)
    if not p.is_file():
        raise not_found("File", file_id, "file_id")
    return Response(p.read_bytes(), media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s, s.begin():
        f = _own_file(s, who, file_id)
        f.deleted = True
        sha = f.sha256
        still = s.execute(select(func.count()).select_from(File).where(
            File.sha256 == sha, File.deleted.is_(False))).scalar_one()
        in_jobs = s.execute(select(func.count()).select_from(Job).where(
            Job.training_sha256 == sha, Job.status.notin_(FINISHED))).scalar_one()
        if not still and not in_jobs:
            st.storage.delete_blob(sha)
    return {"id": file_id, "object": "file", "deleted": True}

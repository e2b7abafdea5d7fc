"""``/v1/files``: streaming JSONL upload (validated before it is stored), list, retrieve, content, delete. A blob is
removed from storage once no live file row and no unfinished job refers to it."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from emguard.server import blobs
from emguard.server import idempotency
from emguard.server.securitylog import record
from emguard.server.db import File, new_id, now
from emguard.server.deps import Caller, ServerState, caller, server_state
from emguard.server.errors import APIError, not_found
from emguard.server.schemas import file_json, page, paginate
from emguard.server.uploads import UploadError, receive_upload, validate_jsonl

router = APIRouter()


@router.post("/v1/files")
async def upload_file(request: Request, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    lim = st.policy.limits
    ikey = idempotency.key_from(request)
    tmp = st.storage.new_tmp()
    try:
        up = await receive_upload(request, tmp, lim.max_upload_bytes)
    except UploadError as e:
        st.storage.drop_tmp(tmp)
        # close the connection: the rest of an over-limit body is not read (or drained) at all
        raise APIError(e.status, e.message, code=e.code, param=e.param,
                       headers={"Connection": "close"} if e.status == 413 else None) from None
    try:
        purpose = up.fields.get("purpose", "")
        if purpose != "fine-tune":
            raise APIError(400, f"purpose must be 'fine-tune' (got {purpose[:40]!r})", code="invalid_purpose",
                           param="purpose")
        dig = idempotency.digest("files", up.sha256, purpose, up.filename)
        if ikey:  # a retried upload: the file the first one made, without validating again
            done = await run_in_threadpool(_replayed_file, st, who, ikey, dig)
            if done is not None:
                st.storage.drop_tmp(tmp)
                return done
        rows, errors = await run_in_threadpool(validate_jsonl, tmp, up.filename, max_rows=lim.max_rows,
                                               max_listed=lim.max_problems_listed, max_line_bytes=lim.max_line_bytes,
                                               max_messages=lim.max_messages_per_row)
        if errors:
            code = "too_many_rows" if rows > lim.max_rows and len(errors) == 1 else "invalid_file_format"
            raise APIError(400, "Invalid file format for fine-tuning:\n" + "\n".join(errors), code=code,
                           param="file")
    except BaseException:
        st.storage.drop_tmp(tmp)
        raise

    def _insert():
        try:
            with st.sessions() as s, s.begin():
                irec = None
                if ikey:
                    done, irec = idempotency.claim(s, who.org, "files", ikey, dig)
                    if done is not None:
                        return file_json(s.execute(select(File).where(File.id == done)).scalar_one())
                # the blob goes in place and its row is added in one transaction holding the digest's lock, so a
                # concurrent delete of another file with the same bytes cannot remove it in between
                blobs.store(s, st.storage, tmp, up.sha256)
                f = File(id=new_id("file"), org=who.org, filename=up.filename, purpose=purpose, bytes=up.size,
                         sha256=up.sha256, rows=rows, status="processed", created_at=now())
                s.add(f)
                if irec is not None:
                    irec.object_id = f.id
                record(s, "file.uploaded", org=who.org, key_id=who.key_id, object_id=f.id,
                       detail={"bytes": up.size, "rows": rows, "sha256": up.sha256})
        finally:
            st.storage.drop_tmp(tmp)
        return file_json(f)

    return await run_in_threadpool(_insert)


def _replayed_file(st: ServerState, who: Caller, ikey: str, dig: str) -> dict | None:
    with st.sessions() as s:
        done = idempotency.prior(s, who.org, "files", ikey, dig)
        f = s.execute(select(File).where(File.id == done, File.org == who.org)).scalar_one_or_none() if done else None
        return file_json(f) if f is not None else None


@router.get("/v1/files")
def list_files(who: Caller = Depends(caller), st: ServerState = Depends(server_state), after: Optional[str] = None,
               limit: int = Query(10000, ge=1, le=10000), order: Literal["asc", "desc"] = "desc",
               purpose: Optional[str] = None):
    where = [File.org == who.org, File.deleted.is_(False)]
    if purpose:
        where.append(File.purpose == purpose)
    with st.sessions() as s:
        rows, more = paginate(s, File, where, after, limit, order, cursor_where=[File.org == who.org])
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
        record(s, "file.deleted", org=who.org, key_id=who.key_id, object_id=f.id)
        blobs.collect(s, st.storage, [f.sha256])  # only when no live file row and no unfinished job refers to it
    return {"id": file_id, "object": "file", "deleted": True}

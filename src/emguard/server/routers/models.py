"""``/v1/models``: the policy's base models, then the caller org's released fine-tuned models."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select

from emguard.server.db import FineTunedModel
from emguard.server.deps import Caller, ServerState, caller, server_state
from emguard.server.errors import APIError

router = APIRouter()


def _base_model_json(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "emguard"}


def _ft_json(m: FineTunedModel) -> dict:
    return {"id": m.id, "object": "model", "created": int(m.created_at), "owned_by": m.org}


@router.get("/v1/models")
def list_models(who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    with st.sessions() as s:
        fts = s.execute(select(FineTunedModel).where(FineTunedModel.org == who.org,
                                                     FineTunedModel.released.is_(True))
                        .order_by(FineTunedModel.seq)).scalars()
        data = [_base_model_json(n) for n in st.policy.models] + [_ft_json(m) for m in fts]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}")
def get_model(model_id: str, who: Caller = Depends(caller), st: ServerState = Depends(server_state)):
    if model_id in st.policy.models:
        return _base_model_json(model_id)
    with st.sessions() as s:
        m = s.execute(select(FineTunedModel).where(FineTunedModel.id == model_id, FineTunedModel.org == who.org,
                                                   FineTunedModel.released.is_(True))).scalar_one_or_none()
        if m is None:
            raise APIError(404, f"The model '{model_id}' does not exist or you do not have access to it.",
                           code="model_not_found", param="model")
        return _ft_json(m)

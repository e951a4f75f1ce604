"""Sign-in: a password for an API credential (SPEC §8)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from liveresponse.protocol.errors import AuthError
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.credentials import check_password, new_api_token, token_hash
from liveresponse.server.rbac import Permission
from liveresponse.server.store.store import AuditEvent

router = APIRouter()

LOGIN_TOKEN_TTL_S = 12 * 3600


class LoginBody(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    tenant: str | None = Field(default=None, max_length=100)


@router.post("/api/v1/auth/login")
async def login(body: LoginBody, request: Request) -> dict[str, Any]:
    state = app_state(request)
    candidates = await state.store.user_by_name_any_tenant(body.user)
    if body.tenant is not None:
        tenant = await state.store.tenant_by_name(body.tenant)
        candidates = [u for u in candidates if u.tenant_id == tenant.id]
    user = next((u for u in candidates if check_password(u.password_hash, body.password)), None)
    if user is None:
        tenant_id = candidates[0].tenant_id if len(candidates) == 1 else None
        await state.store.audit(AuditEvent(tenant_id, body.user, "sign_in", "denied", {"reason": "bad credentials"}))
        raise AuthError("unknown user or wrong password")
    token = new_api_token()
    expires_at = time.time() + LOGIN_TOKEN_TTL_S
    await state.store.add_token(user.id, "login", token_hash(token), expires_at)
    await state.store.audit(AuditEvent(user.tenant_id, user.name, "sign_in", "success", {}))
    return {"token": token, "user": user.name, "role": user.role, "expires_at": expires_at}


@router.get("/api/v1/me")
async def me(caller: Annotated[Caller, Depends(requires(Permission.DEVICES_READ))]) -> dict[str, Any]:
    return {"user": caller.user.name, "role": caller.user.role, "permissions": sorted(caller.permissions)}

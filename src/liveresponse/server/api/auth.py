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
from liveresponse.server.timestamps import iso_seconds

router = APIRouter()

LOGIN_TOKEN_TTL_S = 12 * 3600


class LoginBody(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    tenant: str | None = Field(default=None, max_length=100)


def _locked(name: str, until: float, now: float) -> AuthError:
    return AuthError(
        f"too many failed sign-ins for user {name}: the account is locked until {iso_seconds(until)}; "
        f"try again in {max(1, round(until - now))} s",
        locked_until=iso_seconds(until),
        retry_after_s=max(1, round(until - now)),
    )


@router.post("/api/v1/auth/login")
async def login(body: LoginBody, request: Request) -> dict[str, Any]:
    """A password for a credential. SIGN_IN_MAX_FAILURES failures in SIGN_IN_WINDOW_S lock the account (DR-11)."""
    state = app_state(request)
    now = time.time()
    candidates = await state.store.user_by_name_any_tenant(body.user)
    if body.tenant is not None:
        tenant = await state.store.tenant_by_name(body.tenant)
        candidates = [u for u in candidates if u.tenant_id == tenant.id]
    locked = [u for u in candidates if u.locked_until is not None and u.locked_until > now]
    if locked and len(locked) == len(candidates):
        until = min(u.locked_until or now for u in locked)
        await state.store.audit(
            AuditEvent(locked[0].tenant_id, body.user, "sign_in", "denied", {"reason": "locked", "until": until})
        )
        raise _locked(body.user, until, now)
    open_ = [u for u in candidates if u not in locked]
    user = next((u for u in open_ if check_password(u.password_hash, body.password)), None)
    if user is None:
        lock_until = None
        for candidate in open_:
            lock_until = await state.store.record_sign_in_failure(candidate.id, now) or lock_until
        tenant_id = candidates[0].tenant_id if len(candidates) == 1 else None
        detail: dict[str, Any] = {"reason": "bad credentials"}
        if lock_until is not None:
            detail["locked_until"] = lock_until
        await state.store.audit(AuditEvent(tenant_id, body.user, "sign_in", "denied", detail))
        if lock_until is not None:
            raise _locked(body.user, lock_until, now)
        raise AuthError("unknown user or wrong password")
    if user.failed_sign_ins or user.locked_until is not None:
        await state.store.reset_sign_in_failures(user.id)
    token = new_api_token()
    expires_at = now + LOGIN_TOKEN_TTL_S
    await state.store.add_token(user.id, "login", token_hash(token), expires_at)
    await state.store.audit(AuditEvent(user.tenant_id, user.name, "sign_in", "success", {}))
    return {"token": token, "user": user.name, "role": user.role, "expires_at": expires_at}


@router.get("/api/v1/me")
async def me(caller: Annotated[Caller, Depends(requires(Permission.DEVICES_READ))]) -> dict[str, Any]:
    return {"user": caller.user.name, "role": caller.user.role, "permissions": sorted(caller.permissions)}

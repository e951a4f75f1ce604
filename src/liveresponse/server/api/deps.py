"""Who is calling, and may they: the per-route permission dependency.

Every route depends on :func:`requires` (naming its permission) or is listed
in ``PUBLIC_ROUTES``; tests/test_rbac.py walks the app and proves it. The
caller is looked up on every request: settings, roles and users are never
cached beyond one request (SPEC §3).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, WebSocket

from liveresponse.protocol.errors import AuthError, PermissionDenied
from liveresponse.server.credentials import token_hash
from liveresponse.server.rbac import Permission, permissions_of
from liveresponse.server.state import AppState
from liveresponse.server.store.models import User
from liveresponse.server.store.store import AuditEvent

PUBLIC_ROUTES = {
    # The API's own description is public on purpose: clients and tools read it before signing in.
    "/api/v1/openapi.json",
    "/api/v1/docs",
    "/docs/oauth2-redirect",
    "/api/v1/auth/login",
    "/api/v1/enroll",
    "/api/v1/enroll/ca",
    "/api/v1/health",
    "/agent/v1/connect",
}


@dataclass(frozen=True)
class Caller:
    user: User
    permissions: frozenset[str]

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.lr
    return state


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("sign in first: 'lr login', or set LR_TOKEN to an API token")
    return authorization.split(" ", 1)[1].strip()


async def caller_from_header(state: AppState, authorization: str | None) -> Caller:
    user = await state.store.token_owner(token_hash(_bearer(authorization)), time.time())
    if user is None:
        raise AuthError("the credential is unknown, expired or revoked: sign in again with 'lr login'")
    return Caller(user, frozenset(str(p) for p in permissions_of(user.role)))


async def check(state: AppState, caller: Caller, permission: Permission, action: str) -> None:
    if str(permission) not in caller.permissions:
        await state.store.audit(
            AuditEvent(
                caller.tenant_id, caller.user.name, "denied", "denied", {"action": action, "needs": str(permission)}
            )
        )
        raise PermissionDenied(
            f"{action} needs the permission {permission}; your role {caller.user.role} lacks it",
            permission=str(permission),
        )


def requires(permission: Permission) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        state = app_state(request)
        caller = await caller_from_header(state, request.headers.get("authorization"))
        await check(state, caller, permission, f"{request.method} {request.url.path}")
        return caller

    dependency.permission = permission  # type: ignore[attr-defined]  # read by tests/test_rbac.py
    return dependency


async def websocket_caller(websocket: WebSocket, permission: Permission) -> Caller:
    state: AppState = websocket.app.state.lr
    caller = await caller_from_header(state, websocket.headers.get("authorization"))
    await check(state, caller, permission, f"WS {websocket.url.path}")
    return caller

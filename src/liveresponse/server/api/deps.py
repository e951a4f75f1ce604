"""Who is calling, and may they: the per-route permission dependency.

Every route depends on :func:`requires` (naming its permission) or is listed
in ``PUBLIC_ROUTES``; tests/test_rbac.py walks the app and proves it. The
caller is looked up on every request: settings, roles and users are never
cached beyond one request (SPEC §3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, WebSocket

from liveresponse.protocol.errors import AuthError, PermissionDenied
from liveresponse.server.credentials import token_hash
from liveresponse.server.rbac import BUILTIN_ROLES, Permission, permissions_of, permissions_on_device
from liveresponse.server.state import AppState
from liveresponse.server.store.models import Device, User
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
    "/agent/v1/blobs/{sha256}",  # the agent's fetch of a library file: a one-time ticket from a signed envelope
    "/agent/v1/transfers/{transfer_id}",  # the agent's upload of getfile's bytes: the same kind of ticket (DR-12)
}


@dataclass(frozen=True)
class Caller:
    """Who calls, with the permissions of their role; ``group_ids`` limits the role to those device groups
    (None: every group, DR-11). Route checks use ``permissions``; anything about one device uses ``on``."""

    user: User
    permissions: frozenset[str]
    group_ids: frozenset[str] | None = None

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    def on(self, device: Device) -> frozenset[str]:
        return permissions_on_device(self.permissions, self.group_ids, device.group_id)

    def sees(self, device: Device) -> bool:
        return Permission.DEVICES_READ in self.on(device)


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
    return await caller_of(state, user)


async def caller_of(state: AppState, user: User) -> Caller:
    """A user's permissions, read now (SPEC §3: roles are never cached beyond the request)."""
    custom = None
    if user.role not in BUILTIN_ROLES:
        role = await state.store.role(user.tenant_id, user.role)
        custom = None if role is None else frozenset(Permission(p) for p in role.permissions.split(",") if p)
    groups = None if user.group_ids is None else frozenset(json.loads(user.group_ids))
    return Caller(user, frozenset(str(p) for p in permissions_of(user.role, custom)), groups)


async def check(
    state: AppState, caller: Caller, permission: Permission, action: str, held: frozenset[str] | None = None
) -> None:
    """Refuse (audited, naming the permission) unless ``held`` (default: the caller's role) has ``permission``."""
    if str(permission) not in (caller.permissions if held is None else held):
        detail = {"action": action, "needs": str(permission)}
        await state.store.audit(AuditEvent(caller.tenant_id, caller.user.name, "denied", "denied", detail))
        scope = "" if held is None else " on this device (the role is limited to other device groups)"
        raise PermissionDenied(
            f"{action} needs the permission {permission}; your role {caller.user.role} lacks it{scope}; "
            "a user with users.manage (role admin) can change your role",
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

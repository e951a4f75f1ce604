"""Opening and ending sessions: the gates of SPEC §6, then the store's atomic limits."""

from __future__ import annotations

import time

from liveresponse.protocol.errors import DeviceOffline, NotFound, PermissionDenied, SessionRefused
from liveresponse.server.rbac import Permission
from liveresponse.server.state import AppState
from liveresponse.server.store.models import Device, Session, User
from liveresponse.server.store.store import AuditEvent

SETTINGS_OWNER = "a user with settings.manage (roles security-admin or admin), e.g. 'lr admin settings set'"


def _iso(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def open_session(state: AppState, user: User, device_ref: str) -> tuple[Session, Device]:
    store = state.store
    try:
        device = await store.find_device(user.tenant_id, device_ref)
        settings = await store.settings(user.tenant_id)
        if not settings["live_response_enabled"]:
            raise SessionRefused(
                f"live response is disabled for this tenant (setting live_response_enabled=false); "
                f"{SETTINGS_OWNER} can enable it",
                setting="live_response_enabled",
            )
        if device.device_type == "server" and not settings["live_response_servers_enabled"]:
            raise SessionRefused(
                f"device {device.name} is a server and live response for servers is disabled "
                f"(setting live_response_servers_enabled=false); {SETTINGS_OWNER} can enable it",
                setting="live_response_servers_enabled",
            )
        group = await store.group(device.group_id)
        if group is not None and group.remediation_level == "none":
            raise SessionRefused(
                f"device {device.name} is in group {group.name}, whose remediation level is none: no session "
                "can open there; a user with settings.manage can change the group's level",
                setting="remediation_level",
            )
        if not state.gateway.is_online(device.id):
            raise DeviceOffline(
                f"device {device.name} ({device.id}) is offline; last seen {_iso(device.last_seen)}",
                last_seen=_iso(device.last_seen),
            )
        session = await store.open_session(user.tenant_id, device, user, cwd="/")
    except (SessionRefused, DeviceOffline, NotFound) as exc:
        detail = {"device": device_ref, "reason": exc.message}
        await store.audit(AuditEvent(user.tenant_id, user.name, "session.open", "denied", detail))
        raise
    return session, device


async def end_session(state: AppState, user: User, permissions: frozenset[str], session_id: str) -> Session:
    session = await state.store.session(session_id)
    if session is None or session.tenant_id != user.tenant_id:
        raise NotFound(f"no session {session_id}")
    if session.user_id != user.id and str(Permission.USERS_MANAGE) not in permissions:
        raise PermissionDenied(
            f"session {session_id} belongs to another user; ending it needs the permission {Permission.USERS_MANAGE}",
            permission=str(Permission.USERS_MANAGE),
        )
    for run in [r for r in state.dispatcher.running.values() if r.session_id == session_id]:
        await state.dispatcher.cancel(run.command_id)
    await state.dispatcher.settled(session_id)
    ended = await state.store.end_session(session_id, "ended by " + user.name, user.name)
    assert ended is not None
    return ended

"""Opening and ending sessions: the gates of SPEC §6, then the store's atomic limits."""

from __future__ import annotations

from liveresponse.protocol.errors import DeviceOffline, NotFound, PermissionDenied, SessionRefused
from liveresponse.server.rbac import Permission
from liveresponse.server.state import AppState
from liveresponse.server.store.models import Device, Session, User
from liveresponse.server.store.store import AuditEvent
from liveresponse.server.timestamps import iso_seconds

SETTINGS_OWNER = "a user with settings.manage (roles security-admin or admin), e.g. 'lr admin settings set'"


async def open_session(
    state: AppState, user: User, device_ref: str, group_ids: frozenset[str] | None = None
) -> tuple[Session, Device]:
    """``group_ids``: the device groups the user's role is limited to (None: every group, DR-11)."""
    store = state.store
    found: Device | None = None
    try:
        device = found = await store.find_device(user.tenant_id, device_ref)
        group = await store.group(device.group_id)
        if group_ids is not None and device.group_id not in group_ids:
            where = "no group" if group is None else f"group {group.name}"
            raise PermissionDenied(
                f"your role {user.role} is limited to other device groups, and device {device.name} is in {where}; "
                "a user with users.manage (role admin) can extend your assignment ('lr admin role assign')",
                permission=str(Permission.LIVE_RESPONSE_BASIC),
            )
        settings = await store.settings(user.tenant_id)
        if not settings["live_response_enabled"]:
            raise SessionRefused(
                f"live response is disabled for this tenant (setting live_response_enabled=false); "
                f"{SETTINGS_OWNER} can enable it",
                setting="live_response_enabled",
            )
        device_type = group.device_type if group is not None and group.device_type else device.device_type
        if device_type == "server" and not settings["live_response_servers_enabled"]:
            how = (
                f"group {group.name} marks its devices as servers"
                if device_type != device.device_type
                else ("it reported itself as one at enrollment, or its enrollment token said so")
            )
            raise SessionRefused(
                f"device {device.name} is a server ({how}) and live response for servers is disabled "
                f"(setting live_response_servers_enabled=false); {SETTINGS_OWNER} can enable it",
                setting="live_response_servers_enabled",
            )
        if group is not None and group.remediation_level == "none":
            raise SessionRefused(
                f"device {device.name} is in group {group.name}, whose automation remediation level is none: no "
                f"session can open there; a user with settings.manage (roles security-admin or admin) can raise "
                f"it, e.g. 'lr admin group set {group.name} --remediation-level semi'",
                setting="remediation_level",
            )
        if not state.gateway.is_online(device.id):
            raise DeviceOffline(
                f"device {device.name} ({device.id}) is offline; last seen {iso_seconds(device.last_seen)}",
                last_seen=iso_seconds(device.last_seen),
            )
        session = await store.open_session(user.tenant_id, device, user, cwd="/")
    except (SessionRefused, DeviceOffline, NotFound, PermissionDenied) as exc:
        detail = {"device": device_ref if found is None else found.id, "reason": exc.message}
        await store.audit(AuditEvent(user.tenant_id, user.name, "session.open", "denied", detail))
        raise
    return session, device


async def end_session(state: AppState, user: User, permissions: frozenset[str], session_id: str) -> Session:
    """End one's own session; ending another user's needs users.manage (an administrator, SPEC §6)."""
    session = await state.store.session(session_id)
    if session is None or session.tenant_id != user.tenant_id:
        raise NotFound(f"no session {session_id}")
    if session.user_id != user.id and str(Permission.USERS_MANAGE) not in permissions:
        detail = {"session": session_id, "needs": str(Permission.USERS_MANAGE), "action": "end another's session"}
        await state.store.audit(AuditEvent(user.tenant_id, user.name, "session.close", "denied", detail))
        raise PermissionDenied(
            f"session {session_id} belongs to another user; ending it needs the permission {Permission.USERS_MANAGE}",
            permission=str(Permission.USERS_MANAGE),
        )
    if session.ended_at is not None:
        return session
    for run in [r for r in state.dispatcher.running.values() if r.session_id == session_id]:
        await state.dispatcher.cancel(run.command_id)
    await state.dispatcher.settled(session_id)
    reason = "ended by " + user.name
    ended = await state.store.end_session(session_id, reason, user.name)
    assert ended is not None
    state.dispatcher.notify(session_id, {"type": "session_ended", "reason": reason})
    return ended

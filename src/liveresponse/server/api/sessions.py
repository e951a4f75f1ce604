"""Sessions and their commands over REST (SPEC §6, §9)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from liveresponse.protocol.errors import NotFound, PermissionDenied
from liveresponse.server import sessions as session_rules
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.api.views import command_row, session_row
from liveresponse.server.rbac import Permission
from liveresponse.server.state import AppState
from liveresponse.server.store.models import Device, Session

router = APIRouter()
Responder = Annotated[Caller, Depends(requires(Permission.LIVE_RESPONSE_BASIC))]


class OpenBody(BaseModel):
    device: str = Field(min_length=1, max_length=255)


class CommandBody(BaseModel):
    command_line: str = Field(max_length=65536)
    wait_s: float = Field(default=0.0, ge=0, le=60)


def check_own_open(session: Session | None, caller: Caller, session_id: str) -> Session:
    if session is None or session.tenant_id != caller.tenant_id:
        raise NotFound(f"no session {session_id}")
    if session.user_id != caller.user.id:
        raise PermissionDenied(f"session {session_id} belongs to another user")
    if session.ended_at is not None:
        raise NotFound(f"session {session_id} has ended ({session.end_reason})")
    return session


async def own_open_session(state: AppState, caller: Caller, session_id: str) -> Session:
    return check_own_open(await state.store.session(session_id), caller, session_id)


async def command_context(state: AppState, caller: Caller, session_id: str) -> tuple[Session, Device, dict[str, Any]]:
    """The caller's open session, its device and the tenant's settings: one store round trip."""
    found = await state.store.command_context(session_id)
    session = check_own_open(None if found is None else found[0], caller, session_id)
    assert found is not None
    return session, found[1], found[2]


@router.post("/api/v1/sessions")
async def open_session(body: OpenBody, request: Request, caller: Responder) -> dict[str, Any]:
    state = app_state(request)
    session, device = await session_rules.open_session(state, caller.user, body.device, caller.group_ids)
    return session_row(session, caller.user, device)


@router.get("/api/v1/sessions")
async def list_sessions(
    request: Request, caller: Responder, all: Annotated[bool, Query()] = False
) -> list[dict[str, Any]]:
    state = app_state(request)
    return [session_row(s, u, d) for s, u, d in await state.store.sessions(caller.tenant_id, include_ended=all)]


@router.get("/api/v1/sessions/{session_id}")
async def get_session(session_id: str, request: Request, caller: Responder) -> dict[str, Any]:
    state = app_state(request)
    for s, u, d in await state.store.sessions(caller.tenant_id, include_ended=True):
        if s.id == session_id:
            return session_row(s, u, d)
    raise NotFound(f"no session {session_id}")


@router.delete("/api/v1/sessions/{session_id}")
async def end_session(session_id: str, request: Request, caller: Responder) -> dict[str, Any]:
    state = app_state(request)
    await session_rules.end_session(state, caller.user, caller.permissions, session_id)
    return await get_session(session_id, request, caller)


@router.post("/api/v1/sessions/{session_id}/commands")
async def run_command(session_id: str, body: CommandBody, request: Request, caller: Responder) -> dict[str, Any]:
    """Send one console line; with ``wait_s`` the answer waits up to that long for the end."""
    state = app_state(request)
    session, device, settings = await command_context(state, caller, session_id)
    run = await state.dispatcher.submit(session, caller.user, device, caller.on(device), body.command_line, settings)
    if body.wait_s:
        with contextlib.suppress(TimeoutError):  # still running: the answer says so
            await asyncio.wait_for(run.persisted.wait(), body.wait_s)
    elif run.logged is not None:
        await run.logged
    row = await state.store.command(run.command_id)
    assert row is not None
    return command_row(row)


@router.get("/api/v1/sessions/{session_id}/commands")
async def session_commands(session_id: str, request: Request, caller: Responder) -> list[dict[str, Any]]:
    state = app_state(request)
    session = await state.store.session(session_id)
    if session is None or session.tenant_id != caller.tenant_id:
        raise NotFound(f"no session {session_id}")
    await state.dispatcher.settled(session_id)
    return [command_row(c) for c in await state.store.commands(caller.tenant_id, session_id=session_id)]

"""One command of the log: read it whole, or cancel it (SPEC §4, §9)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from liveresponse.protocol.errors import NotFound
from liveresponse.server.api.audit import device_id_of, parse_time
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.api.views import command_row
from liveresponse.server.rbac import Permission
from liveresponse.server.store.governance import CommandQuery

router = APIRouter()
Responder = Annotated[Caller, Depends(requires(Permission.LIVE_RESPONSE_BASIC))]


@router.get("/api/v1/commands/{command_id}")
async def get_command(command_id: str, request: Request, caller: Responder) -> dict[str, Any]:
    state = app_state(request)
    await state.dispatcher.settled()
    cmd = await state.store.command(command_id)
    if cmd is None or cmd.tenant_id != caller.tenant_id:
        raise NotFound(f"no command {command_id}")
    full = None
    if cmd.output_blob is not None:
        full = (await asyncio.to_thread(state.blobs.read, cmd.output_blob)).decode()
    return command_row(cmd, full)


@router.post("/api/v1/commands/{command_id}/cancel")
async def cancel_command(command_id: str, request: Request, caller: Responder) -> dict[str, Any]:
    state = app_state(request)
    cmd = await state.store.command(command_id)
    if cmd is None or cmd.tenant_id != caller.tenant_id:
        raise NotFound(f"no command {command_id}")
    await state.dispatcher.cancel(command_id)
    return {"id": command_id, "cancel": "requested"}


@router.get("/api/v1/log")
async def command_log(
    request: Request,
    caller: Responder,
    user: Annotated[str | None, Query(max_length=200)] = None,
    device: Annotated[str | None, Query(max_length=255)] = None,
    type: Annotated[str | None, Query(max_length=50, description="command name, e.g. dir")] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    session: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[dict[str, Any]]:
    """The tenant's command log, searched (SPEC §9; ``lr log``)."""
    state = app_state(request)
    await state.dispatcher.settled()
    query = CommandQuery(
        tenant_id=caller.tenant_id,
        user=user,
        device_id=await device_id_of(state, caller, device),
        command=type,
        status=status,
        session_id=session,
        since=parse_time("since", since),
        until=parse_time("until", until),
        limit=limit,
    )
    return [command_row(c) for c in await state.store.search_commands(query)]

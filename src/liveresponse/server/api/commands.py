"""One command of the log: read it whole, or cancel it (SPEC §4, §9)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from liveresponse.protocol.errors import NotFound
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.api.views import command_row
from liveresponse.server.rbac import Permission

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
async def command_log(request: Request, caller: Responder) -> list[dict[str, Any]]:
    state = app_state(request)
    await state.dispatcher.settled()
    return [command_row(c) for c in await state.store.commands(caller.tenant_id)]

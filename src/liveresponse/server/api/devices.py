"""Devices of the caller's tenant (SPEC §3 `lr devices`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.api.views import device_row
from liveresponse.server.rbac import Permission

router = APIRouter()


@router.get("/api/v1/devices")
async def list_devices(
    request: Request, caller: Annotated[Caller, Depends(requires(Permission.DEVICES_READ))]
) -> list[dict[str, Any]]:
    state = app_state(request)
    rows = []
    for device in await state.store.devices(caller.tenant_id):
        if not caller.sees(device):  # a role limited to device groups sees those groups' devices (DR-11)
            continue
        group = await state.store.group(device.group_id)
        rows.append(device_row(device, group, state.gateway.is_online(device.id)))
    return rows

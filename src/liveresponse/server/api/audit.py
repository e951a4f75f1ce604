"""The audit trail, searched (SPEC §9): ``GET /api/v1/audit`` needs audit.read, and sees the caller's tenant only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from liveresponse.protocol.errors import LiveResponseError, NotFound
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.rbac import Permission
from liveresponse.server.state import AppState
from liveresponse.server.store.governance import AuditQuery
from liveresponse.server.store.models import AuditRecord
from liveresponse.server.timestamps import iso_millis

router = APIRouter()
Auditor = Annotated[Caller, Depends(requires(Permission.AUDIT_READ))]


def parse_time(name: str, text: str | None) -> float | None:
    """An ISO 8601 time (``2024-05-01``, ``2024-05-01T12:00:00Z``, with or without an offset; UTC if none)."""
    if text is None or text == "":
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise LiveResponseError(f"--{name} takes an ISO 8601 time such as 2024-05-01T12:00:00Z, not {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def device_id_of(state: AppState, caller: Caller, ref: str | None) -> str | None:
    """A device filter (id or host name) resolved in the caller's tenant; another tenant's is simply not found."""
    if ref is None:
        return None
    device = await state.store.find_device(caller.tenant_id, ref)
    if not caller.sees(device):
        raise NotFound(f"no device with id or host name {ref!r}; 'lr devices' lists them")
    return device.id


def audit_row(rec: AuditRecord) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "at": iso_millis(rec.at),
        "actor": rec.actor,
        "event": rec.event,
        "outcome": rec.outcome,
        "detail": json.loads(rec.detail_json),
        "hash": rec.hash,
    }


@router.get("/api/v1/audit")
async def list_audit(
    request: Request,
    caller: Auditor,
    user: Annotated[str | None, Query(max_length=200)] = None,
    device: Annotated[str | None, Query(max_length=255)] = None,
    type: Annotated[str | None, Query(max_length=60)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[dict[str, Any]]:
    state = app_state(request)
    device_id = await device_id_of(state, caller, device)
    query = AuditQuery(
        tenant_id=caller.tenant_id,
        actor=user,
        event=type,
        refs=None if device_id is None else await state.store.device_refs(device_id),
        since=parse_time("since", since),
        until=parse_time("until", until),
        limit=limit,
    )
    return [audit_row(r) for r in await state.store.search_audit(query)]

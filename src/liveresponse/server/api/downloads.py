"""Collected files (SPEC §7): listed and fetched after their session too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from liveresponse.protocol.errors import NotFound
from liveresponse.server.api.deps import Caller, app_state, requires
from liveresponse.server.rbac import Permission
from liveresponse.server.store.transfer_models import Transfer
from liveresponse.server.store.transfers import TransferRecords
from liveresponse.server.timestamps import iso_millis

router = APIRouter()
Responder = Annotated[Caller, Depends(requires(Permission.LIVE_RESPONSE_BASIC))]
READ_BYTES = 1024 * 1024


def download_row(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "device": t.device_name,
        "path": t.path,
        "size": t.size,
        "sha256": t.sha256,
        "status": t.status,
        "received_bytes": t.received_bytes,
        "user": t.user_name,
        "session_id": t.session_id,
        "command_id": t.command_id,
        "created": iso_millis(t.created_at),
        "completed": iso_millis(t.completed_at),
        "error": t.error,
    }


async def _own(request: Request, caller: Caller, download_id: str) -> Transfer:
    transfer = await TransferRecords(app_state(request).store).get(download_id)
    if transfer is None or transfer.tenant_id != caller.tenant_id:
        raise NotFound(f"no download {download_id}; 'lr downloads list' lists them")
    return transfer


@router.get("/api/v1/downloads")
async def list_downloads(request: Request, caller: Responder) -> list[dict[str, Any]]:
    return [download_row(t) for t in await TransferRecords(app_state(request).store).downloads(caller.tenant_id)]


@router.get("/api/v1/downloads/{download_id}")
async def get_download(download_id: str, request: Request, caller: Responder) -> dict[str, Any]:
    return download_row(await _own(request, caller, download_id))


@router.get("/api/v1/downloads/{download_id}/content")
async def download_content(download_id: str, request: Request, caller: Responder) -> StreamingResponse:
    """The file's bytes, streamed from the blob store; ``Range: bytes=N-`` continues a broken download."""
    transfer = await _own(request, caller, download_id)
    if transfer.status != "complete" or transfer.sha256 is None:
        raise NotFound(f"download {download_id} is not complete ({transfer.status})")
    path = app_state(request).blobs.path(transfer.sha256)
    size = os.path.getsize(path)
    start = 0
    ranged = request.headers.get("range", "")
    if ranged.startswith("bytes=") and ranged[6:].rstrip("-").isdigit():
        start = min(int(ranged[6:].rstrip("-")), size)

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            fh.seek(start)
            while block := fh.read(READ_BYTES):
                yield block

    headers = {
        "content-length": str(size - start),
        "x-content-sha256": transfer.sha256,
        "content-disposition": 'attachment; filename="download"',
        "accept-ranges": "bytes",
    }
    status = 206 if start else 200
    if start:
        headers["content-range"] = f"bytes {start}-{size - 1}/{size}"
    return StreamingResponse(chunks(), status_code=status, headers=headers, media_type="application/octet-stream")

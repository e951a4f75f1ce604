"""The agent's upload of getfile's bytes (SPEC §7, DR-12).

PUT /agent/v1/transfers/{id}?offset=N&ticket=T   agent upload   public: the one-time ticket from a signed envelope
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from liveresponse.protocol.transfer import UPLOAD_ROUTE
from liveresponse.server.api.deps import app_state

router = APIRouter()
log = logging.getLogger("liveresponse.uploads")


@router.put(UPLOAD_ROUTE, response_model=None)
async def agent_upload(
    transfer_id: str,
    request: Request,
    ticket: Annotated[str, Query(max_length=100)],
    offset: Annotated[int, Query(ge=0)],
) -> dict[str, Any] | JSONResponse:
    """The body is the file's bytes from ``offset``, written as it comes (never held whole in memory)."""
    uploads = app_state(request).dispatcher.uploads
    try:
        incoming = await uploads.receive(transfer_id, ticket, offset, request.stream())
    except ClientDisconnect:
        # The agent went away mid-body; what arrived stays, and the transfer resumes from its durable offset.
        log.info("upload of transfer %s broke off", transfer_id)
        return JSONResponse({"error": {"code": "bad_request", "message": "the upload broke off"}}, 400)
    return {"transfer_id": transfer_id, "received_bytes": incoming.received}

"""The tenant library over REST, and the agent's one-time blob fetch (SPEC §5, §7; DR-13).

GET    /api/v1/library                     list             live_response.advanced (as the console's library)
PUT    /api/v1/library/{name}/signature    attach signature library.manage
PUT    /api/v1/library/{name}              upload (raw body) library.manage   ?description&overwrite&...
DELETE /api/v1/library/{name}              delete           library.manage
GET    /agent/v1/blobs/{sha256}?ticket=T   agent fetch      public: the one-time ticket from a signed envelope
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from liveresponse.protocol.library import check_name
from liveresponse.server.api.deps import Caller, requires
from liveresponse.server.library import LibraryService, file_row
from liveresponse.server.rbac import Permission

router = APIRouter()
Manager = Annotated[Caller, Depends(requires(Permission.LIBRARY_MANAGE))]
Advanced = Annotated[Caller, Depends(requires(Permission.LIVE_RESPONSE_ADVANCED))]


class SignatureBody(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(min_length=1, max_length=200)


def library_service(request: Request) -> LibraryService:
    service: LibraryService = request.app.state.library
    return service


@router.get("/api/v1/library")
async def list_library(request: Request, caller: Advanced) -> list[dict[str, Any]]:
    return [file_row(r) for r in await library_service(request).ops.files(caller.tenant_id)]


@router.put("/api/v1/library/{name}/signature")
async def sign_library_file(name: str, body: SignatureBody, request: Request, caller: Manager) -> dict[str, Any]:
    row = await library_service(request).sign(caller.tenant_id, name, body.sha256, body.signature, caller.user.name)
    return file_row(row)


@router.put("/api/v1/library/{name:path}")
async def upload_library_file(
    name: str,
    request: Request,
    caller: Manager,
    description: Annotated[str, Query(max_length=10000)] = "",
    parameters_description: Annotated[str | None, Query(max_length=10000)] = None,
    overwrite: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The body is the file's bytes, streamed to disk (never held whole in memory)."""
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    row, replaced = await library_service(request).receive(
        caller.tenant_id,
        name,
        request.stream(),
        declared,
        description,
        parameters_description,
        overwrite,
        caller.user.name,
    )
    return {**file_row(row), "replaced": replaced}


@router.delete("/api/v1/library/{name:path}")
async def delete_library_file(name: str, request: Request, caller: Manager) -> dict[str, Any]:
    row = await library_service(request).ops.delete(caller.tenant_id, check_name(name), caller.user.name)
    return {**file_row(row), "deleted": True}


@router.get("/agent/v1/blobs/{sha256}")
async def agent_blob(sha256: str, request: Request, ticket: Annotated[str, Query(max_length=100)]) -> FileResponse:
    path = library_service(request).redeem(sha256, ticket)
    return FileResponse(path, media_type="application/octet-stream")

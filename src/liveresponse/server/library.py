"""The tenant library on the server: uploads, the ``library`` command, and what putfile and run send (SPEC §5, §7).

Upload: the body streams to a temp file beside the blob store, hashed and
counted as it arrives; more than ``library_max_bytes`` is refused with the limit
in bytes (a declared Content-Length over it before a byte is read). The file
is fsynced and published into the content-addressed store atomically, then
the row is written. Every upload path comes through :meth:`LibraryService.receive`.

putfile and run (DR-13): the signed envelope carries the file's name, sha256
and size and a one-time ticket; the agent fetches ``GET /agent/v1/blobs/{sha256}
?ticket=T`` over its pinned TLS and checks the sha256 itself. For run it also
carries the signature, the tenant's publisher keys and ``unsigned_allowed``,
so the device applies the signing rule itself, trusting only the server's
envelope signature. Tickets live in this process (the agent fetches from the
node that signed its envelope), expire after ``TICKET_TTL_S`` and work once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveresponse.protocol.commandline import split_parameters
from liveresponse.protocol.errors import LimitExceeded, LiveResponseError, NotFound, PermissionDenied
from liveresponse.protocol.library import (
    ScriptNotTrusted,
    check_name,
    check_script_trust,
    matching_publisher,
)
from liveresponse.server.blobs import BlobStore
from liveresponse.server.rbac import Permission
from liveresponse.server.store.library import LibraryOps, NewFile
from liveresponse.server.store.library_models import LibraryFile
from liveresponse.server.store.models import Device, Session, User
from liveresponse.server.store.store import AuditEvent, Store
from liveresponse.server.timestamps import iso_millis

TICKET_TTL_S = 120.0
Permissions = Callable[[User], Awaitable[frozenset[str]]]


def file_row(row: LibraryFile) -> dict[str, Any]:
    """A library file as the API, the CLI and the ``library`` command show it (SPEC §5 fields)."""
    return {
        "name": row.name,
        "size": row.size,
        "sha256": row.sha256,
        "description": row.description,
        "has_parameters": bool(row.parameters_description),
        "parameters_description": row.parameters_description,
        "created_by": row.created_by,
        "created": iso_millis(row.created_at),
        "updated": iso_millis(row.updated_at),
        "signed": row.signature is not None,
        "publisher": row.publisher,
    }


def too_big(size: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"library file of {size} bytes or more is over the limit library_max_bytes={limit} bytes",
        limit="library_max_bytes",
        max_bytes=limit,
    )


@dataclass
class Ticket:
    sha256: str
    device_id: str
    expires_at: float


class LibraryService:
    def __init__(self, store: Store, blobs: BlobStore, permissions: Permissions) -> None:
        self.store = store
        self.ops = LibraryOps(store)
        self.blobs = blobs
        self.permissions = permissions
        self._tickets: dict[str, Ticket] = {}

    # -- upload --------------------------------------------------------------

    async def receive(
        self,
        tenant_id: str,
        name: str,
        body: AsyncIterator[bytes],
        declared_bytes: int | None,
        description: str,
        parameters_description: str | None,
        overwrite: bool,
        actor: str,
    ) -> tuple[LibraryFile, bool]:
        check_name(name)
        limit = int((await self.store.settings(tenant_id))["library_max_bytes"])
        if declared_bytes is not None and declared_bytes > limit:
            raise too_big(declared_bytes, limit)
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs.tmp, prefix="library-")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise too_big(size, limit)
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            sha256 = digest.hexdigest()
            await asyncio.to_thread(self.blobs.publish, tmp, sha256)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        new = NewFile(name, size, sha256, description, parameters_description or None)
        return await self.ops.put(tenant_id, new, overwrite, actor)

    async def sign(self, tenant_id: str, name: str, sha256: str, signature: str, actor: str) -> LibraryFile:
        """Attach a detached signature; refused unless a publisher of the tenant's keys verifies it."""
        row = await self.ops.file(tenant_id, check_name(name))
        if row.sha256 != sha256:
            raise ScriptNotTrusted(
                f"the signed file has sha256 {sha256}, the library's {name} has {row.sha256}: sign the file "
                "that was uploaded",
                rule="signature",
            )
        publishers = [{"name": p.name, "public_key": p.public_key} for p in await self.ops.publishers(tenant_id)]
        publisher = matching_publisher(row.sha256, signature, publishers)
        if publisher is None:
            raise ScriptNotTrusted(
                f"no trusted publisher of the tenant has the key that made this signature ({len(publishers)} "
                "publisher(s)); add it with 'lr admin publisher add NAME PUBKEY'",
                rule="signature",
            )
        return await self.ops.set_signature(tenant_id, name, row.sha256, signature, publisher, actor)

    # -- the console's ``library`` command (Runs.SERVER) -----------------------

    async def library_command(self, session: Session, user: User, args: dict[str, Any]) -> list[dict[str, Any]]:
        if args.get("action") == "delete":
            name = args.get("name")
            if not name:
                raise LiveResponseError("library delete needs the file's name: library delete NAME")
            if str(Permission.LIBRARY_MANAGE) not in await self.permissions(user):
                detail = {"action": "library delete", "needs": str(Permission.LIBRARY_MANAGE)}
                await self.store.audit(AuditEvent(session.tenant_id, user.name, "denied", "denied", detail))
                raise PermissionDenied(
                    f"library delete needs the permission {Permission.LIBRARY_MANAGE}; your role {user.role} lacks it",
                    permission=str(Permission.LIBRARY_MANAGE),
                )
            row = await self.ops.delete(session.tenant_id, check_name(str(name)), user.name)
            return [{**file_row(row), "deleted": True}]
        if args.get("name"):
            raise LiveResponseError("library takes a name only after delete: library delete NAME")
        return [file_row(r) for r in await self.ops.files(session.tenant_id)]

    # -- putfile and run -------------------------------------------------------

    def issue_ticket(self, sha256: str, device_id: str) -> str:
        now = time.time()
        for key in [k for k, t in self._tickets.items() if t.expires_at < now]:
            del self._tickets[key]
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = Ticket(sha256, device_id, now + TICKET_TTL_S)
        return ticket

    def redeem(self, sha256: str, ticket: str) -> Path:
        """The blob's path for a valid ticket, which is then used up."""
        found = self._tickets.pop(ticket, None)
        if found is None or found.sha256 != sha256 or found.expires_at < time.time():
            raise NotFound("no such blob, or the ticket is unknown, used or expired")
        path = self.blobs.path(sha256)
        if not path.exists():
            raise NotFound(f"blob {sha256} is missing from the blob store")
        return path

    def _attachment(self, row: LibraryFile, device: Device) -> dict[str, Any]:
        return {
            "name": row.name,
            "sha256": row.sha256,
            "size": row.size,
            "ticket": self.issue_ticket(row.sha256, device.id),
            "path": f"/agent/v1/blobs/{row.sha256}",
        }

    async def prepare_putfile(
        self, session: Session, user: User, device: Device, args: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        row = await self.ops.file(session.tenant_id, check_name(str(args["name"])))
        attachment = self._attachment(row, device)
        detail = {"session": session.id, "device": device.id, "name": row.name, "sha256": row.sha256}
        await self.store.audit(AuditEvent(session.tenant_id, user.name, "library.putfile", "success", detail))
        return attachment

    async def prepare_run(
        self, session: Session, user: User, device: Device, args: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        name = str(args["script"])
        split_parameters(str(args.get("parameters") or ""))  # an unterminated quote is refused here, not sent
        row = await self.ops.file(session.tenant_id, check_name(name))
        unsigned_allowed = bool(settings["unsigned_scripts_allowed"])
        detail: dict[str, Any] = {"session": session.id, "device": device.id, "name": row.name, "sha256": row.sha256}
        try:
            # The server applies the unsigned rule; the device checks the signature itself (DR-13).
            if row.signature is None:
                check_script_trust(row.name, row.sha256, None, [], unsigned_allowed, "on the server")
        except ScriptNotTrusted as exc:
            detail["refused"] = exc.message
            await self.store.audit(AuditEvent(session.tenant_id, user.name, "library.run", "denied", detail))
            raise
        publishers = [
            {"name": p.name, "public_key": p.public_key} for p in await self.ops.publishers(session.tenant_id)
        ]
        attachment = self._attachment(row, device)
        attachment.update(
            signature=row.signature,
            signed_by=row.publisher,
            publishers=publishers,
            unsigned_allowed=unsigned_allowed,
        )
        detail["publisher"] = row.publisher
        await self.store.audit(AuditEvent(session.tenant_id, user.name, "library.run", "success", detail))
        return attachment

    def install(self, server_commands: dict[str, Any], preparers: dict[str, Any]) -> None:
        server_commands["library"] = self.library_command
        preparers["putfile"] = self.prepare_putfile
        preparers["run"] = self.prepare_run

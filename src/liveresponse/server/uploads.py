"""getfile's bytes arriving by the agent's HTTP PUT, one leg of a transfer per ticket (SPEC §7, DR-12).

    grant(transfer, device)  -> {"upload_path", "ticket"} for the signed getfile envelope
    receive(PUT ...)         -> ticket redeemed (one use, bound to the transfer and the device, 120 s)
                             -> offset must be the server's received bytes (else Conflict)
                             -> each block of the body written and hashed by FileReceiver.append

The body is consumed as it comes and written in line, so memory stays flat and
a recorded offset never runs ahead of the bytes (server/transfers.py). A PUT
that breaks off leaves the part file as it is: the dispatcher resumes the
transfer from its durable offset with a new envelope and a new ticket.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from liveresponse.protocol.errors import Conflict, NotFound
from liveresponse.protocol.transfer import upload_path
from liveresponse.server.transfers import FileReceiver, Incoming

log = logging.getLogger("liveresponse.uploads")

TICKET_TTL_S = 120.0  # from the envelope's signing to the PUT's first byte; the upload itself may take longer


@dataclass(frozen=True)
class UploadTicket:
    transfer_id: str
    device_id: str
    expires_at: float


class AgentUploads:
    def __init__(self, receiver: FileReceiver, on_progress: Callable[[Incoming], None]) -> None:
        self.receiver = receiver
        self.on_progress = on_progress
        self._tickets: dict[str, UploadTicket] = {}

    def grant(self, transfer_id: str, device_id: str) -> dict[str, str]:
        """What the getfile envelope carries so the agent can PUT the bytes of this transfer."""
        now = time.time()
        for key in [k for k, t in self._tickets.items() if t.expires_at < now]:
            del self._tickets[key]
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = UploadTicket(transfer_id, device_id, now + TICKET_TTL_S)
        return {"upload_path": upload_path(transfer_id), "ticket": ticket}

    def _redeem(self, transfer_id: str, ticket: str) -> Incoming:
        found = self._tickets.pop(ticket, None)
        if found is None or found.transfer_id != transfer_id or found.expires_at < time.time():
            raise NotFound("no such transfer, or the upload ticket is unknown, used or expired")
        incoming = self.receiver.incoming.get(transfer_id)
        if incoming is None or incoming.transfer.device_id != found.device_id:
            raise NotFound(f"transfer {transfer_id} is not open for this device on this server")
        return incoming

    async def receive(self, transfer_id: str, ticket: str, offset: int, body: AsyncIterator[bytes]) -> Incoming:
        """Write one PUT's body into the transfer from ``offset``; returns when every byte is written."""
        incoming = self._redeem(transfer_id, ticket)
        if incoming.writing:
            raise Conflict(f"transfer {transfer_id} already has an upload under way")
        if offset != incoming.received:
            raise Conflict(
                f"upload of transfer {transfer_id} at offset {offset}, but the server holds "
                f"{incoming.received} bytes of it: refused (the next envelope names the offset)",
                offset=offset,
                expected=incoming.received,
            )
        incoming.writing = True
        try:
            async for block in body:
                if block:
                    self.receiver.append(incoming, block)
                    self.on_progress(incoming)
        finally:
            incoming.writing = False
        return incoming

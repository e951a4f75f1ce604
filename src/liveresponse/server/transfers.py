"""The server's side of getfile: part files, the durable offset, verification, publication (SPEC §7).

The bytes arrive by the agent's HTTP PUT (server/uploads.py, DR-12); they are
appended to ``blobs/tmp/<transfer>.part`` and hashed as they come.
Every DURABLE_EVERY_BYTES the part file is fsynced and the offset recorded in
the store: that offset is where a transfer resumes after a dropped
connection, an agent restart or a server restart (the part file is cut back
to it). At the end the device's sha256 must equal the server's; only then is
the part fsynced and published, atomically, as a content-addressed blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.protocol.errors import CommandFailed, Conflict, LimitExceeded
from liveresponse.server.blobs import BlobStore
from liveresponse.server.store.transfer_models import Transfer
from liveresponse.server.store.transfers import TransferRecords

log = logging.getLogger("liveresponse.transfers")

DURABLE_EVERY_BYTES = 64 * 1024 * 1024
PROGRESS_EVERY_BYTES = 16 * 1024 * 1024


@dataclass
class Incoming:
    transfer: Transfer
    fd: int
    received: int
    durable: int
    hasher: Any = field(default_factory=hashlib.sha256)
    last_progress: int = 0
    started_at: float = field(default_factory=time.monotonic)
    syncing: asyncio.Future[None] | None = None
    writing: bool = False  # an agent's PUT is streaming into it (one at a time)


class FileReceiver:
    def __init__(self, records: TransferRecords, blobs: BlobStore) -> None:
        self.records = records
        self.blobs = blobs
        self.incoming: dict[str, Incoming] = {}

    def part_path(self, transfer_id: str) -> str:
        return str(self.blobs.tmp / f"{transfer_id}.part")

    async def open(self, transfer: Transfer) -> Incoming:
        """Open (or reopen, cut back to its durable offset) the part file of a transfer."""
        durable = transfer.received_bytes
        fd = os.open(self.part_path(transfer.id), os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, durable)
        hasher = hashlib.sha256()
        if durable:
            await asyncio.to_thread(_hash_prefix, fd, durable, hasher)
        os.lseek(fd, durable, os.SEEK_SET)
        incoming = Incoming(transfer, fd, durable, durable, hasher, last_progress=durable)
        self.incoming[transfer.id] = incoming
        return incoming

    async def on_start(self, transfer_id: str, event: dict[str, Any]) -> None:
        incoming = self.incoming.get(transfer_id)
        if incoming is None:
            return
        identity = {k: int(event[k]) for k in ("size", "mtime_ns", "inode")}
        if incoming.transfer.size is None:
            incoming.transfer.size = identity["size"]
            await self.records.update(transfer_id, **identity)

    def append(self, incoming: Incoming, data: bytes) -> None:
        """Write and hash bytes that follow ``incoming.received``; refused once the transfer was closed or reopened."""
        if self.incoming.get(incoming.transfer.id) is not incoming:
            raise Conflict(f"transfer {incoming.transfer.id} was interrupted or ended: these bytes are refused")
        size = incoming.transfer.size
        if size is not None and incoming.received + len(data) > size:
            raise LimitExceeded(
                f"transfer {incoming.transfer.id} is {size} bytes; the upload went past it: refused",
                size=size,
                limit=size,
            )
        # Written and hashed in line: what `received` counts is in the file before the next block is
        # read, so a durable offset can never run ahead of the bytes. (A writer thread with a queue
        # was tried: one resume after a server kill ended in a sha256 mismatch, cause not found.)
        _write_and_hash(incoming, data)
        incoming.received += len(data)
        if incoming.received - incoming.durable >= DURABLE_EVERY_BYTES and incoming.syncing is None:
            # fsync in the background while bytes keep coming; the offset counts once it is on disk.
            incoming.syncing = asyncio.ensure_future(self.make_durable(incoming))

    async def make_durable(self, incoming: Incoming) -> None:
        upto = incoming.received  # every byte up to here is already written (append)
        await asyncio.to_thread(os.fsync, incoming.fd)
        incoming.durable = upto
        await self.records.update(incoming.transfer.id, received_bytes=upto)
        incoming.syncing = None

    async def _settle(self, incoming: Incoming) -> None:
        if incoming.syncing is not None:
            await incoming.syncing

    async def interrupt(self, transfer_id: str) -> None:
        """The device went away mid-transfer: keep what arrived, to resume from there."""
        incoming = self.incoming.pop(transfer_id, None)
        if incoming is None:
            return
        await self._settle(incoming)
        await self.make_durable(incoming)
        os.close(incoming.fd)
        await self.records.update(transfer_id, status="interrupted")

    async def complete(self, transfer_id: str, device_sha256: str, device_size: int) -> Transfer:
        incoming = self.incoming.pop(transfer_id, None)
        if incoming is None:
            raise CommandFailed(f"transfer {transfer_id} is not open on this server")
        await self._settle(incoming)
        try:
            ours = incoming.hasher.hexdigest()
            if incoming.received != device_size or ours != device_sha256:
                raise CommandFailed(
                    f"the copy does not match the device: {incoming.received} bytes with sha256 {ours}, "
                    f"the device read {device_size} bytes with sha256 {device_sha256}; nothing is kept"
                )
            await asyncio.to_thread(os.fsync, incoming.fd)
        except BaseException:
            os.close(incoming.fd)
            await self.discard(transfer_id, "sha256 mismatch")
            raise
        os.close(incoming.fd)
        await asyncio.to_thread(self.blobs.publish, Path(self.part_path(transfer_id)), ours)
        await self.records.finish(transfer_id, "complete", ours, None, incoming.received)
        incoming.transfer.sha256 = ours
        incoming.transfer.size = incoming.received
        return incoming.transfer

    async def discard(self, transfer_id: str, error: str) -> None:
        incoming = self.incoming.pop(transfer_id, None)
        if incoming is not None:
            await self._settle(incoming)
            os.close(incoming.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part_path(transfer_id))
        await self.records.finish(transfer_id, "failed", None, error, 0)

    def close_all(self) -> None:
        for incoming in self.incoming.values():
            os.close(incoming.fd)
        self.incoming.clear()


def _write_and_hash(incoming: Incoming, data: bytes) -> None:
    incoming.hasher.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(incoming.fd, view) :]


def _hash_prefix(fd: int, length: int, hasher: Any) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    remaining = length
    while remaining:
        block = os.read(fd, min(remaining, 4 * 1024 * 1024))
        if not block:
            raise CommandFailed("the part file is shorter than its recorded offset")
        hasher.update(block)
        remaining -= len(block)

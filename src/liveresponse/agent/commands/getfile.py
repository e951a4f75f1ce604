"""getfile: stream one regular file to the server (SPEC §7, DR-12).

The server names the transfer (``transfer_id``), where to start (``offset``,
non-zero when resuming) and where to PUT the bytes with a one-time ticket
(``upload_path``, ``ticket``; agent/upload.py). Before any byte moves the file must be
a regular file, readable, and no larger than ``getfile_max_bytes`` (its
logical size: a sparse file counts whole). The sha256 is computed here over
the whole file (the part before ``offset`` is read again when resuming). The
file's identity (size, mtime, inode) is reported first; a resume names the
identity seen at the start, and a file that changed — before, during or
between the parts of a transfer — fails honestly. An upload whose connection
broke ends with the code ``transfer_interrupted`` and the bytes sent so far:
the server resumes it from its durable offset.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext, CommandEnded, Row
from liveresponse.agent.commands.path_lookup import stat_or_fail
from liveresponse.agent.platform.linux.file_metadata import detailed_type
from liveresponse.agent.upload import Upload, UploadBroken
from liveresponse.protocol.errors import CommandFailed, LimitExceeded
from liveresponse.protocol.names import escape_bytes
from liveresponse.protocol.transfer import CHUNK_BYTES, TRANSFER_INTERRUPTED

COMMAND = "getfile"


def _identity(info: os.stat_result) -> dict[str, int]:
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino}


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    if ctx.upload is None or ctx.report is None:
        raise CommandFailed("getfile needs a connection to the server")
    path = ctx.resolve_path(args["path"])
    shown = escape_bytes(path)
    transfer_id = str(args["transfer_id"])
    offset = int(args.get("offset", 0))
    info = stat_or_fail(path, follow=True, missing="no such file", action="collect")
    if not stat.S_ISREG(info.st_mode):
        kind = detailed_type(info.st_mode)
        raise CommandFailed(f"{shown} is a {kind}, not a regular file: getfile collects regular files only")
    if info.st_size > ctx.getfile_max_bytes:
        raise LimitExceeded(
            f"{shown} is {info.st_size} bytes, over {ctx.getfile_limit_name} ({ctx.getfile_max_bytes} bytes)",
            size=info.st_size,
            limit=ctx.getfile_max_bytes,
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    try:
        opened = os.fstat(fd)
        identity = _identity(opened)
        expected = args.get("expect")
        if isinstance(expected, dict) and expected != identity:
            raise CommandFailed(f"{shown} changed since the transfer began ({expected} -> {identity}): not resumed")
        if offset > opened.st_size:
            raise CommandFailed(f"resume offset {offset} is past the end of {shown} ({opened.st_size} bytes)")
        ctx.report({"event": "transfer_start", "transfer_id": transfer_id, "path": shown, "offset": offset, **identity})
        digest = hashlib.sha256()
        position = 0
        while position < offset:  # rebuild the hash of what the server already holds
            ctx.check_cancelled()
            block = os.read(fd, min(CHUNK_BYTES * 4, offset - position))
            if not block:
                raise CommandFailed(f"{shown} got shorter during the transfer")
            digest.update(block)
            position += len(block)
        position = _send_rest(ctx, args, fd, shown, offset, identity["size"], digest)
        grew = os.read(fd, 1)
        after = _identity(os.fstat(fd))
    finally:
        os.close(fd)
    if after != identity or position != identity["size"] or grew:
        raise CommandFailed(f"{shown} changed during the transfer ({identity} -> {after}): the copy is not kept")
    return {
        "path": shown,
        "size": position,
        "sha256": digest.hexdigest(),
        "transfer_id": transfer_id,
        "resumed_from": offset,
    }


def _send_rest(
    ctx: CommandContext, args: dict[str, Any], fd: int, shown: str, offset: int, size: int, digest: Any
) -> int:
    """PUT the bytes from ``offset`` to ``size``, hashing them on the way; returns where it stopped."""
    position = offset
    upload: Upload | None = None
    try:
        upload = ctx.upload.open(str(args["upload_path"]), str(args["ticket"]), offset, size - offset)
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        while position < size:
            ctx.check_cancelled()
            count = os.readv(fd, [view[: min(CHUNK_BYTES, size - position)]])
            if not count:
                raise CommandFailed(f"{shown} got shorter during the transfer ({position} of {size} bytes)")
            digest.update(view[:count])
            upload.send(view[:count])
            position += count
        upload.finish()
    except UploadBroken as exc:
        result = {"transfer_id": args["transfer_id"], "sent_to": position}
        message = f"the upload of {shown} broke off at byte {position}: {exc}; the server resumes it"
        raise CommandEnded("failed", TRANSFER_INTERRUPTED, message, result) from None
    finally:
        if upload is not None:
            upload.close()
    return position

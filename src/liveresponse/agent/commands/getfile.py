"""getfile: stream one regular file to the server in chunks (SPEC §7).

The server names the transfer (``transfer_id``) and where to start
(``offset``, non-zero when resuming). Before any byte moves the file must be
a regular file, readable, and no larger than ``getfile_max_bytes`` (its
logical size: a sparse file counts whole). The sha256 is computed here over
the whole file (the part before ``offset`` is read again when resuming). The
file's identity (size, mtime, inode) is reported first; a resume names the
identity seen at the start, and a file that changed — before, during or
between the parts of a transfer — fails honestly.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.path_lookup import stat_or_fail
from liveresponse.agent.platform.linux.file_metadata import detailed_type
from liveresponse.protocol.errors import CommandFailed, LimitExceeded
from liveresponse.protocol.names import escape_bytes
from liveresponse.protocol.transfer import CHUNK_BYTES

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
        while True:
            ctx.check_cancelled()
            block = os.read(fd, CHUNK_BYTES)
            if not block:
                break
            digest.update(block)
            ctx.upload(transfer_id, position, block)
            position += len(block)
        after = _identity(os.fstat(fd))
    finally:
        os.close(fd)
    if after != identity or position != identity["size"]:
        raise CommandFailed(f"{shown} changed during the transfer ({identity} -> {after}): the copy is not kept")
    return {
        "path": shown,
        "size": position,
        "sha256": digest.hexdigest(),
        "transfer_id": transfer_id,
        "resumed_from": offset,
    }

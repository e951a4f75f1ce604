"""fileinfo: describe one file, its metadata and hashes (SPEC §5).

The path is described with lstat: a symbolic link is described as a link (its
target in ``link_target``), never followed. Only regular files are opened;
FIFOs, sockets and devices are described from metadata alone, because opening
a FIFO blocks and reading a device can have side effects.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.path_lookup import stat_or_fail
from liveresponse.agent.platform import require_linux
from liveresponse.agent.platform.linux import file_content, file_magic, file_metadata, mounts
from liveresponse.agent.platform.linux.birth_time import birth_time_ns
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.protocol.names import escape_bytes

COMMAND = "fileinfo"

_NOT_READ_DESCRIPTIONS = {
    "dir": "directory",
    "fifo": "fifo (named pipe)",
    "socket": "socket",
    "char_device": "character special",
    "block_device": "block special",
}


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    require_linux(COMMAND)
    path = ctx.resolve_path(args["path"])
    info = stat_or_fail(path, follow=False, missing="no such file", action="describe")
    row = _metadata_row(path, escape_bytes(path), info)
    row.update(_content_fields(ctx, path, info, row["type"]))
    return row


def _metadata_row(path: bytes, shown: str, info: os.stat_result) -> Row:
    created_ns = birth_time_ns(path)
    row: Row = {
        "path": shown,
        "type": file_metadata.detailed_type(info.st_mode),
        "size": info.st_size,
        **file_metadata.mode_fields(info.st_mode),
        **file_metadata.ownership_fields(info),
        "inode": info.st_ino,
        "links": info.st_nlink,
        "created": None if created_ns is None else iso_utc_from_ns(created_ns),
        "modified": iso_utc_from_ns(info.st_mtime_ns),
        "accessed": iso_utc_from_ns(info.st_atime_ns),
        "changed": iso_utc_from_ns(info.st_ctime_ns),
        "link_target": None,
    }
    if stat.S_ISLNK(info.st_mode):
        row["link_target"] = _link_target(path)
    return row


def _link_target(path: bytes) -> str | None:
    try:
        return escape_bytes(os.readlink(path))
    except OSError:
        return None


def _no_hashes(magic: str | None, reason: str | None) -> Row:
    return {"md5": None, "sha1": None, "sha256": None, "magic": magic, "hash_skipped_reason": reason}


def _content_fields(ctx: CommandContext, path: bytes, info: os.stat_result, file_type: str) -> Row:
    if file_type == "link":
        return _no_hashes(f"symbolic link to {_link_target(path)}", "a symbolic link is described, not followed")
    if file_type != "file":
        description = _NOT_READ_DESCRIPTIONS.get(file_type, file_type)
        return _no_hashes(description, f"{description} is not a regular file; only regular files are read")
    limit = ctx.fileinfo_hash_max_bytes
    pseudo = mounts.pseudo_file_system_of(os.path.realpath(path))
    if pseudo is not None:
        return _no_hashes(None, f"on a {pseudo} pseudo file system: made up by the kernel as it is read, not hashed")
    try:
        if info.st_size > limit:
            reason = f"size {info.st_size} bytes is over fileinfo_hash_max_bytes ({limit} bytes)"
            return _no_hashes(file_magic.describe(file_content.read_prefix(path, info)), reason)
        content = file_content.digest(path, info, ctx.check_cancelled)
    except file_content.FileReplaced:
        return _no_hashes(None, "the file was replaced while being described; describe it again")
    except OSError as error:
        return _no_hashes(None, f"cannot read {escape_bytes(path)}: {error.strerror or error}")
    return {
        "md5": content.md5,
        "sha1": content.sha1,
        "sha256": content.sha256,
        "magic": file_magic.describe(content.prefix),
        "hash_skipped_reason": None,
    }

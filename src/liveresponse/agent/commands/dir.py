"""dir: list a directory, or describe one file (SPEC §5).

Entries are described with lstat, so a symbolic link is listed as a link with
its target, never followed. The directory named by the analyst is followed if
it is a link (``dir /bin`` lists /usr/bin's entries under /bin), as ``ls`` does.
An entry that disappears between readdir and lstat is left out.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.path_lookup import stat_or_fail
from liveresponse.agent.platform import require_linux
from liveresponse.agent.platform.linux import file_metadata
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes

COMMAND = "dir"


def run(ctx: CommandContext, args: dict[str, Any]) -> list[Row]:
    require_linux(COMMAND)
    # full_path changes only the console's table: rows always carry name and path.
    path = ctx.resolve_path(args.get("path"))
    shown = escape_bytes(path)
    try:
        followed = os.stat(path)
    except FileNotFoundError:
        _raise_not_found_unless_dangling_link(path, shown)
        return [_only_entry(path)]
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    except OSError as error:
        raise CommandFailed(f"cannot list {shown}: {error.strerror}") from None
    if not stat.S_ISDIR(followed.st_mode):
        return [_only_entry(path)]
    return _list_directory(ctx, path, shown)


def _raise_not_found_unless_dangling_link(path: bytes, shown: str) -> None:
    try:
        os.lstat(path)
    except OSError:
        raise NotFound(f"no such file or directory: {shown}") from None


def _only_entry(path: bytes) -> Row:
    info = stat_or_fail(path, follow=False, missing="no such file or directory", action="describe")
    return _row(os.path.basename(path), path, info)


def _list_directory(ctx: CommandContext, path: bytes, shown: str) -> list[Row]:
    rows: list[tuple[bytes, Row]] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                ctx.check_cancelled()
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we listed
                rows.append((entry.name, _row(entry.name, entry.path, info)))
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    except OSError as error:
        raise CommandFailed(f"cannot list {shown}: {error.strerror}") from None
    rows.sort(key=lambda named: named[0])
    return [row for _, row in rows]


def _row(name: bytes, path: bytes, info: os.stat_result) -> Row:
    link_target = None
    if stat.S_ISLNK(info.st_mode):
        try:
            link_target = escape_bytes(os.readlink(path))
        except OSError:
            link_target = None
    return {
        "name": escape_bytes(name),
        "path": escape_bytes(path),
        "type": file_metadata.listing_type(info.st_mode),
        "size": info.st_size,
        **file_metadata.mode_fields(info.st_mode),
        **file_metadata.ownership_fields(info),
        "modified": file_metadata.modified(info),
        "link_target": link_target,
    }

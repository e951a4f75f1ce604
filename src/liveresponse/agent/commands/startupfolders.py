"""``startupfolders``: XDG autostart entries, system and per user (SPEC §5).

Rows: ``path, name, exec, user`` (``(all users)`` for /etc/xdg/autostart) plus
``enabled``, ``only_show_in``, ``overrides``, ``modified``; an autostart folder
that could not be read is a row with ``checked: false`` and the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from liveresponse.agent.commands.collector_root import collector_root, stream
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

if TYPE_CHECKING:
    from liveresponse.agent.platform.linux.rootfs import FsRoot

COMMAND = "startupfolders"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    fs = collector_root(ctx, args)
    return stream(ctx, _rows(fs), fs)


def _rows(fs: FsRoot) -> Iterator[Row]:
    from liveresponse.agent.platform.linux.autostart import collect_autostart
    from liveresponse.agent.platform.linux.passwd import read_users, users_with_homes
    from liveresponse.agent.platform.linux.rootfs import Reader, show

    reader = Reader(fs)
    for entry in collect_autostart(reader, users_with_homes(read_users(fs, reader))):
        yield {
            "path": show(entry.path),
            "name": entry.name,
            "exec": entry.exec,
            "user": entry.user,
            "enabled": entry.enabled,
            "only_show_in": entry.only_show_in,
            "overrides": show(entry.overrides) if entry.overrides else None,
            "modified": fs.modified(entry.path),
        }
    for path, reason in reader.problems:
        yield {"path": show(path), "name": None, "exec": None, "user": None, "checked": False, "reason": reason}

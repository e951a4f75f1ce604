"""``connections``: TCP and UDP sockets with their owning process (SPEC §5).

Sockets belong to the running kernel, so under an offline collector root (a
mounted image) there is nothing to list: the command fails and says why rather
than describing the analyst's host. See platform/linux/sockets.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux
from liveresponse.protocol.errors import CommandFailed

COMMAND = "connections"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    if ctx.root not in ("", "/"):
        raise CommandFailed(f"connections describes the running system; the collector root {ctx.root} is offline")
    from liveresponse.agent.platform.linux.sockets import connection_rows

    return _rows(ctx, connection_rows())


def _rows(ctx: CommandContext, rows: Iterator[Row]) -> Iterator[Row]:
    for row in rows:
        ctx.check_cancelled()
        yield row

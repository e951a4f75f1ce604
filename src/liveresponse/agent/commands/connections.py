"""``connections``: TCP and UDP sockets with their owning process (SPEC §5).

Sockets belong to the running kernel, so under an offline collector root (a
mounted image) there is nothing to list: the command fails and says why rather
than describing the analyst's host. See platform/linux/sockets.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.collector_root import require_live_root, stream
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

COMMAND = "connections"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    require_live_root(ctx, "connections describes the running system")
    from liveresponse.agent.platform.linux.sockets import connection_rows

    return stream(ctx, connection_rows())

"""``drivers``: loaded kernel modules (SPEC §5); see platform/linux/modules.py.

Loaded modules belong to the running kernel; under an offline collector root
the command fails and says so instead of describing the analyst's host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux
from liveresponse.protocol.errors import CommandFailed

COMMAND = "drivers"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    if ctx.root not in ("", "/"):
        raise CommandFailed(f"drivers describes the running kernel; the collector root {ctx.root} is offline")
    from liveresponse.agent.platform.linux.modules import list_drivers

    return _rows(ctx, list_drivers())


def _rows(ctx: CommandContext, rows: Iterator[Row]) -> Iterator[Row]:
    for row in rows:
        ctx.check_cancelled()
        yield row

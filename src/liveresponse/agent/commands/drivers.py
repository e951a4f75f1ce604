"""``drivers``: loaded kernel modules (SPEC §5); see platform/linux/modules.py.

Loaded modules belong to the running kernel; under an offline collector root
the command fails and says so instead of describing the analyst's host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.collector_root import require_live_root, stream
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

COMMAND = "drivers"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    require_live_root(ctx, "drivers describes the running kernel")
    from liveresponse.agent.platform.linux.modules import list_drivers

    return stream(ctx, list_drivers())

"""registry: the Windows registry, which Linux devices do not have (SPEC §5)."""

from __future__ import annotations

from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import current
from liveresponse.protocol.errors import NotAvailable

COMMAND = "registry"


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    platform = current()
    if platform != "windows":
        raise NotAvailable(
            f"registry is not available on {platform}: the Windows registry exists only on Windows devices"
        )
    # No Windows implementation exists yet (platform/windows/ is future work).
    raise NotAvailable("registry is not available in this build of the agent")

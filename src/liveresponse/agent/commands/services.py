"""``services``: systemd units and SysV scripts (SPEC §5); see platform/linux/services.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.collector_root import collector_root, stream
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

COMMAND = "services"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    from liveresponse.agent.platform.linux.services import list_services

    fs = collector_root(ctx, args)
    return stream(ctx, list_services(fs, args.get("name")), fs)

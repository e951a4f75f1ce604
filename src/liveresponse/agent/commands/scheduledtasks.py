"""``scheduledtasks``: cron entries, systemd timers, at jobs (SPEC §5); see platform/linux/scheduled.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

COMMAND = "scheduledtasks"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    from liveresponse.agent.platform.linux.rootfs import FsRoot
    from liveresponse.agent.platform.linux.scheduled import list_scheduled_tasks

    fs = FsRoot(args.get("root") or ctx.root)
    for row in list_scheduled_tasks(fs, args.get("name")):
        ctx.check_cancelled()
        if not fs.live:
            row["root"] = fs.root
        yield row

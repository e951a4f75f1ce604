"""``persistence``: every known persistence mechanism, system and per user (SPEC §5).

The row shape and the "absent" / "not checked" rules are documented in
platform/linux/persistence.py. ``-root`` examines another file-system root for
this one command; rows of an offline root carry ``root``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.collector_root import collector_root, stream
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux

COMMAND = "persistence"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    from liveresponse.agent.platform.linux.persistence import collect_persistence

    fs = collector_root(ctx, args)
    return stream(ctx, collect_persistence(fs, between_rows=ctx.check_cancelled), fs)

"""What the collector commands share: the root they read and how their rows leave.

``persistence``, ``scheduledtasks``, ``services`` and ``startupfolders`` read
files, so they can examine another file-system root (``-root``, else the
agent's ``--root``); rows of an offline root carry ``root`` so nobody mistakes
them for the live machine. ``connections`` and ``drivers`` describe the running
kernel, which an offline root does not have: they refuse one. Every row is a
point where the analyst's cancel is honoured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.protocol.errors import CommandFailed

if TYPE_CHECKING:
    from liveresponse.agent.platform.linux.rootfs import FsRoot


def collector_root(ctx: CommandContext, args: dict[str, Any]) -> FsRoot:
    from liveresponse.agent.platform.linux.rootfs import FsRoot

    return FsRoot(args.get("root") or ctx.root)


def require_live_root(ctx: CommandContext, describes: str) -> None:
    """Refuse an offline root: ``describes`` says what the command shows ("connections describes ...")."""
    if ctx.root not in ("", "/"):
        raise CommandFailed(f"{describes}; the collector root {ctx.root} is offline")


def stream(ctx: CommandContext, rows: Iterable[Row], fs: FsRoot | None = None) -> Iterator[Row]:
    """Rows as they come, cancellable between them, marked with an offline root."""
    for row in rows:
        ctx.check_cancelled()
        if fs is not None and not fs.live:
            row["root"] = fs.root
        yield row

"""cd: change the session's working directory, or print it (SPEC §5).

The agent checks the directory and returns its shown (escaped) form; the
server stores that as the session's working directory for later commands.
The path is kept as typed after lexical ``..`` folding, the way a shell shows
it, rather than resolved through symbolic links.
"""

from __future__ import annotations

import os
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.path_lookup import directory_or_fail
from liveresponse.agent.platform import require_linux
from liveresponse.protocol.errors import CommandFailed
from liveresponse.protocol.names import escape_bytes

COMMAND = "cd"


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    require_linux(COMMAND)
    text = args.get("path")
    if not text:
        return {"cwd": ctx.cwd}
    path = ctx.resolve_path(text)
    shown = escape_bytes(path)
    directory_or_fail(path, action="change to")  # follows links: "cd /var/run" enters the directory it points to
    if not os.access(path, os.X_OK):
        raise CommandFailed(f"permission denied: {shown} cannot be entered")
    return {"cwd": shown}

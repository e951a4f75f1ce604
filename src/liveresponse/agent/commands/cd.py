"""cd: change the session's working directory, or print it (SPEC §5).

The agent checks the directory and returns its shown (escaped) form; the
server stores that as the session's working directory for later commands.
The path is kept as typed after lexical ``..`` folding, the way a shell shows
it, rather than resolved through symbolic links.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes

COMMAND = "cd"


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    require_linux(COMMAND)
    text = args.get("path")
    if not text:
        return {"cwd": ctx.cwd}
    path = ctx.resolve_path(text)
    shown = escape_bytes(path)
    try:
        info = os.stat(path)  # follows links: "cd /var/run" enters the directory it points to
    except FileNotFoundError:
        raise NotFound(f"no such directory: {shown}") from None
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    except OSError as error:
        raise CommandFailed(f"cannot change to {shown}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise CommandFailed(f"not a directory: {shown}")
    if not os.access(path, os.X_OK):
        raise CommandFailed(f"permission denied: {shown} cannot be entered")
    return {"cwd": shown}

"""putfile: copy a library file into the agent's working folder, verified by sha256 (SPEC §5).

The signed envelope names the file, its sha256 and size and carries a one-time
ticket; agent/workfolder.py fetches the bytes over the pinned TLS and publishes
them only when the sha256 matches. The name is checked here again (no slash, no
traversal), whatever the server sent.
"""

from __future__ import annotations

from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.protocol.errors import CommandFailed, NotAvailable
from liveresponse.protocol.library import check_name

COMMAND = "putfile"


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    name = check_name(str(args["name"]))
    library = ctx.library
    if ctx.files is None:
        raise NotAvailable("this agent has no working folder configured")
    if not library or library.get("name") != name:
        raise CommandFailed(f"the command for {name} came without its library file; is the server up to date?")
    result: Row = ctx.files.put(library, bool(args.get("keep")), bool(args.get("overwrite")), ctx.check_cancelled)
    return result

"""undo: restore a remediated entity exactly, never over something new at its place (SPEC §5).

``undo TYPE ID``: ID is a remediation id (``remediate list``) or the entity's
identifier (a path for file and startupfolder, resolved against the session's
working directory; a name for service and scheduledtask; a pid for process).
Several remediations of one entity: the newest not yet restored. The record's
type picks ``undo_<name>(ctx, vault, record) -> record`` in the platform module
(remediate.HANDLERS), under the vault's lock; it returns what the undo did.
"""

from __future__ import annotations

from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.remediate import platform_function, vault_for
from liveresponse.agent.platform import require_linux
from liveresponse.agent.quarantine import Vault
from liveresponse.agent.quarantine_records import is_record_id, public
from liveresponse.protocol.errors import CommandFailed

COMMAND = "undo"
_PATH_TYPES = ("file", "startupfolder")


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    require_linux(COMMAND)
    type = str(args["type"]).lower()
    undoer = platform_function(type, COMMAND)
    ident = str(args.get("id") or "")
    if not ident:
        raise CommandFailed(f"undo {type} needs the remediation id or the entity: undo {type} ID")
    vault = vault_for(ctx, COMMAND)
    with vault.lock:
        record = vault.find_for_undo(type, _lookup(ctx, vault, type, ident))
        record = undoer(ctx, vault, record)
    return public(record)


def _lookup(ctx: CommandContext, vault: Vault, type: str, ident: str) -> str:
    """What to look the record up by: the id, else for paths the resolved path, else as given.

    An autostart entry may also be named by its Name or file name (``undo startupfolder evil.desktop``)
    when no remediation of that path relative to the working directory exists.
    """
    if type not in _PATH_TYPES or (is_record_id(ident) and vault.get(ident) is not None):
        return ident
    resolved = ctx.show(ctx.resolve_path(ident))
    if type != "startupfolder" or "/" in ident:
        return resolved
    records = [r for r in vault.records() if r["type"] == type]
    if any(r["entity"] == resolved for r in records):
        return resolved
    named = [r for r in records if ident in (r.get("entry_name"), r["entity"].rsplit("/", 1)[-1])]
    return str(named[-1]["entity"]) if named else resolved

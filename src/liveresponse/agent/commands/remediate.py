"""remediate: take a threat off the device and keep what is needed to undo it (SPEC §5).

``remediate TYPE ID`` dispatches to ``remediate_<name>(ctx, vault, id, entity,
force) -> record`` in ``platform/linux/remediate_<module>.py`` (``HANDLERS``);
the record is saved in the vault (agent/quarantine.py) and returned without its
items.
``remediate list`` gives every record, oldest first. The server adds the
entity's listing row (``entity``) and the requester; the platform modules check
the entity is still what was listed. A remediation holds the vault's lock from
start to end and does not check for cancel: once begun it completes (SPEC §4).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import current, require_linux
from liveresponse.agent.quarantine import Vault
from liveresponse.agent.quarantine_records import public
from liveresponse.protocol.errors import CommandFailed, NotAvailable

COMMAND = "remediate"

# type -> (module under agent/platform/linux, name): it holds remediate_<name> and undo_<name>.
HANDLERS = {
    "file": ("remediate_files", "file"),
    "startupfolder": ("remediate_files", "startupfolder"),
    "process": ("remediate_process", "process"),
    "service": ("remediate_service", "service"),
    "scheduledtask": ("remediate_task", "task"),
}
_PLATFORM_PACKAGE = "liveresponse.agent.platform.linux"


def platform_function(type: str, command: str) -> Callable[..., dict[str, Any]]:
    """``remediate_<name>`` or ``undo_<name>`` (``command``) for a type, imported when first needed."""
    if type == "registry":
        raise NotAvailable(f"{command} registry is not available on {current()}: the registry exists only on Windows")
    if type not in HANDLERS:
        raise CommandFailed(f"{command} cannot handle type {type!r}; types: {', '.join(HANDLERS)}")
    module_name, name = HANDLERS[type]
    qualified = f"{_PLATFORM_PACKAGE}.{module_name}"
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if error.name != qualified:
            raise
        raise NotAvailable(f"{command} {type} is not available in this build of the agent") from None
    function = getattr(module, f"{command}_{name}", None)
    if function is None:
        raise NotAvailable(f"{command} {type} is not available in this build of the agent")
    return function  # type: ignore[no-any-return]


def vault_for(ctx: CommandContext, command: str) -> Vault:
    if ctx.state_dir is None:
        raise NotAvailable(f"{command} needs the agent's state directory for its quarantine; none is configured")
    if ctx.root != "/":
        raise NotAvailable(f"{command} acts on the live system only; this agent examines the root {ctx.root}")
    return Vault(ctx.state_dir)


def run(ctx: CommandContext, args: dict[str, Any]) -> Row | list[Row]:
    require_linux(COMMAND)
    type = str(args["type"]).lower()
    if type == "list":
        vault = vault_for(ctx, COMMAND)
        with vault.lock:
            return [public(record) for record in vault.records()]
    remediator = platform_function(type, COMMAND)
    ident = args.get("id")
    if ident is None or str(ident) == "":
        raise CommandFailed(f"remediate {type} needs the entity: remediate {type} ID (path, pid or name)")
    vault = vault_for(ctx, COMMAND)
    entity = args.get("entity") or {}
    with vault.lock:
        record = remediator(ctx, vault, str(ident), entity, bool(args.get("force")))
    return public(record)

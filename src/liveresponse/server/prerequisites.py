"""What a command needs before it is sent, and what a remediation leaves in the audit trail (SPEC §4, §9).

A command with a prerequisite (getfile: fileinfo of the path; remediate: the
entity's listing, DR-14) is planned here: which listing, of which entity, the
line -auto runs, and which row of the listing shows the entity. The dispatcher
looks the listing up in the session's log and runs it for -auto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from liveresponse.protocol.catalogue import REMEDIATION_PREREQUISITES, CommandSpec
from liveresponse.protocol.commandline import ParsedLine, quote_word
from liveresponse.protocol.errors import CommandFailed, LimitExceeded, LiveResponseError
from liveresponse.protocol.names import canonical, resolve_lexically
from liveresponse.server.store.store import AuditEvent

if TYPE_CHECKING:
    from liveresponse.server.dispatcher import Running


def plan_prerequisite(cwd: str, parsed: ParsedLine, spec: CommandSpec) -> Prerequisite | None:
    """Which listing this command needs first, of which entity (SPEC §4); None when it needs none."""
    if spec.prerequisite is None:
        return None
    if spec.name != "remediate":
        target = canonical(resolve_lexically(cwd, str(parsed.args["path"])))
        return Prerequisite(spec.prerequisite, target, f"{spec.prerequisite} {quote_word(target)}", "path", target)
    kind = str(parsed.args["type"])
    command = REMEDIATION_PREREQUISITES.get(kind)
    if command is None:  # list; registry (refused on the device)
        return None
    ident = parsed.args.get("id")
    if ident is None or str(ident) == "":
        raise Refused(CommandFailed(f"remediate {kind} needs the entity's id: usage: {spec.usage}"))
    text = str(ident)
    if kind == "file":
        target = canonical(resolve_lexically(cwd, text))
        return Prerequisite(command, target, f"fileinfo {quote_word(target)}", "path", target)
    if kind == "process":
        if not text.isdigit():
            raise Refused(CommandFailed(f"remediate process takes a process id, not {text!r}"))
        return Prerequisite(command, f"pid {int(text)}", f"processes {int(text)}", "pid", int(text))
    if kind == "service":
        return Prerequisite(command, text, f"services -name {quote_word(text)}", "name", text)
    if kind == "scheduledtask":
        return Prerequisite(command, text, f"scheduledtasks {quote_word(text)}", "name", text)
    target = canonical(resolve_lexically(cwd, text)) if "/" in text else text
    return Prerequisite(command, target, command, "path" if "/" in text else "name", target)


def remediation_audit(
    run: Running, status: str, result: dict[str, Any] | None, error: dict[str, Any] | None
) -> AuditEvent | None:
    """Remediations and undos get an audit record of what was done on the device, beside the command's own."""
    if run.spec.name not in ("remediate", "undo") or run.parsed.args.get("type") == "list":
        return None
    detail: dict[str, Any] = {
        "command_id": run.command_id,
        "session": run.session_id,
        "device": run.device_id,
        "type": run.parsed.args.get("type"),
        "id": run.parsed.args.get("id"),
        "status": status,
    }
    if result is not None:
        for key in ("id", "state", "actions", "left", "path", "sha256"):
            if key in result:
                detail["remediation_id" if key == "id" else key] = result[key]
    if error is not None:
        detail["error"] = error.get("message")
    outcome = "success" if status == "completed" else "failure"
    if error is not None and error.get("code") in _END_NOT_REPORTED:
        # The device may have done it all: a begun remediation completes there (DR-14). Say so, not "failure".
        outcome = "unknown"
        detail["note"] = "the device did not report the end; 'remediate list' on the device shows what was done"
    return AuditEvent(run.tenant_id, run.user_name, f"remediation.{run.spec.name}", outcome, detail)


_END_NOT_REPORTED = frozenset({"device_offline", "server_stopped", "timed_out", "cancelled"})


def shows(row: dict[str, Any], plan: Prerequisite) -> bool:
    value = row.get(plan.key)
    if plan.key == "path" and isinstance(value, str):
        return canonical(value) == plan.value  # both in the one shown form (names.py)
    return bool(value == plan.value)


@dataclass(frozen=True)
class Prerequisite:
    """The listing a command needs first: run ``auto_line`` and find the row whose ``key`` is ``value``."""

    command: str
    entity: str  # as the analyst will read it in a refusal
    auto_line: str
    key: str
    value: str | int


class Refused(Exception):
    """A refusal decided while checking a prerequisite; the caller logs it before raising the error."""

    def __init__(self, error: LiveResponseError) -> None:
        super().__init__(error.message)
        self.error = error


def getfile_refusal(info: dict[str, Any], target: str, limit: int) -> LiveResponseError | None:
    """Refusals decided from the fileinfo result, before any byte moves (SPEC §7)."""
    kind = info.get("type")
    if kind != "file":
        return CommandFailed(f"{target} is a {kind}, not a regular file: getfile collects regular files only")
    size = int(info.get("size") or 0)
    if size > limit:
        return LimitExceeded(
            f"{target} is {size} bytes, over getfile_max_bytes ({limit} bytes)", size=size, limit=limit
        )
    return None

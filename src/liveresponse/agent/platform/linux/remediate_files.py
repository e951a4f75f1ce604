"""remediate/undo of a file and of an XDG autostart entry: quarantine into the vault, restore exactly (SPEC §5).

The entity is the row of the listing the analyst ran in the session (fileinfo
for a file, startupfolders for an entry), added to the arguments by the server.
What is on disk now must still be what was listed: a file whose inode, size or
sha256 changed since (or, when fileinfo gave no sha256, its modified or changed
time: listed_file.py), or an entry whose Exec or modification time changed, is
refused with the difference and nothing is done, because the analyst decided on
what they saw. A protected file (protected.py) is refused without -force.

Undo puts the file back through remediate_common (every conflict checked first).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.autostart import parse_desktop_entry
from liveresponse.agent.platform.linux.protected import Protection
from liveresponse.agent.platform.linux.remediate_common import finish, quarantine_unless_protected, undo_quarantine
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes, escape_text, resolve_lexically, unescape_to_bytes

# A desktop entry is a few hundred bytes; reading more than this to compare Exec would be a different file.
_DESKTOP_ENTRY_MAX_BYTES = 1024 * 1024
# No link, and no FIFO swapped in after the lstat: opening one for reading would wait for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def remediate_file(
    ctx: CommandContext,
    vault: Vault,
    ident: str,
    entity: dict[str, Any] | None,
    force: bool,
    *,
    checker: Protection | None = None,
) -> dict[str, Any]:
    path = ctx.resolve_path(ident)
    shown = escape_bytes(path)
    entity = entity or {}
    _check_listed_path("fileinfo", shown, entity)
    _lstat_or_fail(path)
    # Without a sha256 (a file over fileinfo_hash_max_bytes) its times stand in for it (listed_file.py).
    expect = {key: entity.get(key) for key in ("inode", "size", "sha256", "modified", "changed")}
    record = vault.new_record("file", shown, ctx)
    record["path"] = shown
    _quarantine_or_refuse(ctx, vault, record, path, expect, force, checker)
    return finish(vault, record)


def remediate_startupfolder(
    ctx: CommandContext,
    vault: Vault,
    ident: str,
    entity: dict[str, Any] | None,
    force: bool,
    *,
    checker: Protection | None = None,
) -> dict[str, Any]:
    entity = entity or {}
    # The server also matches an entry by its Name (no slash): the listed row then says where it is.
    by_name = "/" not in ident and bool(entity.get("path"))
    path = unescape_to_bytes(str(entity["path"])) if by_name else ctx.resolve_path(ident)
    shown = escape_bytes(path)
    _check_listed_path("startupfolders", shown, entity)
    info = _lstat_or_fail(path)
    if not stat.S_ISREG(info.st_mode):
        raise CommandFailed(f"{shown} is not a regular file: an autostart entry is a .desktop file; nothing done")
    changes = _entry_changes(path, info, entity)
    if changes:
        raise CommandFailed(f"{shown} changed since startupfolders listed it: {'; '.join(changes)}; nothing done")
    record = vault.new_record("startupfolder", shown, ctx)
    record["path"] = shown
    record["entry_name"] = entity.get("name")
    if entity.get("name") or entity.get("exec"):
        record["actions"].append(f"autostart entry {entity.get('name')!r} (Exec {entity.get('exec')!r})")
    expect = {"dev": info.st_dev, "inode": info.st_ino, "size": info.st_size, "ctime_ns": info.st_ctime_ns}
    _quarantine_or_refuse(ctx, vault, record, path, expect, force, checker)
    if entity.get("overrides"):
        record["left"].append(f"the system entry {entity['overrides']} applies to {entity.get('user')} again")
    return finish(vault, record)


def undo_file(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    return undo_quarantine(ctx, vault, record)


def undo_startupfolder(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    return undo_quarantine(ctx, vault, record)


def _quarantine_or_refuse(
    ctx: CommandContext,
    vault: Vault,
    record: dict[str, Any],
    path: bytes,
    expect: dict[str, Any],
    force: bool,
    checker: Protection | None,
) -> None:
    """Quarantine the file the analyst named; a protected one is refused, as nothing else would be done."""
    item = quarantine_unless_protected(vault, record, path, force, ctx.state_dir, expect=expect, checker=checker)
    if item is None:
        raise CommandFailed(record["left"][-1])


def _lstat_or_fail(path: bytes) -> os.stat_result:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no such file: {escape_bytes(path)}") from None


def _check_listed_path(kind: str, shown: str, entity: dict[str, Any]) -> None:
    listed = entity.get("path")
    if listed and resolve_lexically("/", str(listed)) != shown:
        raise CommandFailed(f"the {kind} row the server sent is for {listed}, not {shown}; nothing done")


def _entry_changes(path: bytes, info: os.stat_result, entity: dict[str, Any]) -> list[str]:
    changes = []
    listed_modified = entity.get("modified")
    modified = iso_utc_from_ns(info.st_mtime_ns)
    if listed_modified and listed_modified != modified:
        changes.append(f"modified was {listed_modified}, now {modified}")
    if "exec" in entity and info.st_size <= _DESKTOP_ENTRY_MAX_BYTES:
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as error:
            return [*changes, f"it cannot be read now ({error.strerror})"]
        with open(fd, "rb") as entry:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(now.st_mode):
                return [*changes, "it was replaced meanwhile"]
            values = parse_desktop_entry(entry.read(_DESKTOP_ENTRY_MAX_BYTES))
        exec_now = escape_text(values["Exec"]) if "Exec" in values else None
        if exec_now != entity["exec"]:
            changes.append(f"Exec was {entity['exec']!r}, now {exec_now!r}")
    return changes

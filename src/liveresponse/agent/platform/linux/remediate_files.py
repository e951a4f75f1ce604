"""remediate/undo of a file and of an XDG autostart entry: quarantine into the vault, restore exactly (SPEC §5).

The entity is the row of the listing the analyst ran in the session (fileinfo
for a file, startupfolders for an entry), added to the arguments by the server.
What is on disk now must still be what was listed: a file whose inode, size or
sha256 changed since, or an entry whose Exec or modification time changed, is
refused with the difference and nothing is done, because the analyst decided on
what they saw.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.autostart import parse_desktop_entry
from liveresponse.agent.platform.linux.file_metadata import group_name, owner_name
from liveresponse.agent.platform.linux.protected import Protection, protection
from liveresponse.agent.platform.linux.remediate_common import still_in_place
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import Vault, conflict_at, now_iso_seconds
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes, escape_text, resolve_lexically, unescape_to_bytes

# A desktop entry is a few hundred bytes; reading more than this to compare Exec would be a different file.
_DESKTOP_ENTRY_MAX_BYTES = 1024 * 1024


def protected_reason(ctx: CommandContext, path: bytes, checker: Protection | None) -> str | None:
    if checker is not None:
        return checker.reason(path, ctx.state_dir)
    return protection(path, ctx.state_dir)


def quarantine_into_record(
    ctx: CommandContext,
    vault: Vault,
    record: dict[str, Any],
    path: bytes,
    expect: dict[str, Any],
    force: bool,
    checker: Protection | None = None,
) -> dict[str, Any]:
    """Quarantine one file into ``record`` (saved as "remediating" before the original goes); the item.

    A protected file is refused without ``force``; with it, the record says so.
    """
    shown = escape_bytes(path)
    reason = protected_reason(ctx, path, checker)
    if reason is not None and not force:
        raise CommandFailed(f"left {shown} in place: {reason}; -force quarantines it")
    if reason is not None:
        record["actions"].append(f"forced: {reason}")
    record["state"] = "remediating"
    item = vault.quarantine_file(path, expect, record=record)
    record["path"] = shown
    record["sha256"] = item["sha256"]
    record["actions"].append(f"quarantined {shown} ({item['size']} bytes, sha256 {item['sha256']}) as {record['id']}")
    if item["links"] > 1:
        others = item["links"] - 1
        record["left"].append(
            f"{shown} had {item['links']} hard links: its content stays reachable under the other {others}"
        )
    return item


def _lstat_or_fail(path: bytes) -> os.stat_result:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no such file: {escape_bytes(path)}") from None


def _check_listed_path(kind: str, shown: str, entity: dict[str, Any]) -> None:
    listed = entity.get("path")
    if listed and resolve_lexically("/", str(listed)) != shown:
        raise CommandFailed(f"the {kind} row the server sent is for {listed}, not {shown}; nothing done")


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
    expect = {key: entity.get(key) for key in ("inode", "size", "sha256")}
    record = vault.new_record("file", shown, ctx)
    quarantine_into_record(ctx, vault, record, path, expect, force, checker)
    record["state"] = "remediated"
    vault.save(record)
    return record


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
    record["entry_name"] = entity.get("name")
    if entity.get("name") or entity.get("exec"):
        record["actions"].append(f"autostart entry {entity.get('name')!r} (Exec {entity.get('exec')!r})")
    quarantine_into_record(ctx, vault, record, path, {"inode": info.st_ino, "size": info.st_size}, force, checker)
    if entity.get("overrides"):
        record["left"].append(f"the system entry {entity['overrides']} applies to {entity.get('user')} again")
    record["state"] = "remediated"
    vault.save(record)
    return record


def _entry_changes(path: bytes, info: os.stat_result, entity: dict[str, Any]) -> list[str]:
    changes = []
    listed_modified = entity.get("modified")
    modified = iso_utc_from_ns(info.st_mtime_ns)
    if listed_modified and listed_modified != modified:
        changes.append(f"modified was {listed_modified}, now {modified}")
    if "exec" in entity and info.st_size <= _DESKTOP_ENTRY_MAX_BYTES:
        with open(path, "rb") as entry:
            values = parse_desktop_entry(entry.read(_DESKTOP_ENTRY_MAX_BYTES))
        now = escape_text(values["Exec"]) if "Exec" in values else None
        if now != entity["exec"]:
            changes.append(f"Exec was {entity['exec']!r}, now {now!r}")
    return changes


def undo_file(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    """Restore every file item of a record; a Conflict changes nothing."""
    items = [item for item in record.get("items") or [] if item.get("kind") == "file"]
    if not items:
        raise CommandFailed(f"{record['id']} holds no quarantined file to restore")
    if record["state"] == "remediating" and all(still_in_place(item) for item in items):
        # Interrupted before the unlink (module docstring of agent/quarantine.py): the file is in place.
        for item in items:
            vault.discard_blob(item)
            record["actions"].append(
                f"the remediation was interrupted before {item['path']} was removed: it is in place, unchanged"
            )
        return _restored(ctx, vault, record)
    for item in items:
        existing = _lstat(item["path"])
        if existing is not None:
            raise conflict_at(unescape_to_bytes(item["path"]), existing)
    for item in items:
        result = vault.restore_file(item)
        for made in result["created_parents"]:
            parent = next(p for p in item["parents"] if p["path"] == made)
            record["actions"].append(
                f"re-created directory {made} with mode {parent['mode']:04o},"
                f" owner {owner_name(parent['uid'])}:{group_name(parent['gid'])}"
            )
        record["actions"].append(
            f"restored {item['path']} (sha256 {result['sha256']}) with mode {int(item['mode']):04o},"
            f" owner {item['owner']}:{item['group']}, mtime {iso_utc_from_ns(int(item['mtime_ns']))}"
        )
        if result.get("xattrs_not_restored"):
            record["left"].append(
                f"extended attributes of {item['path']} not restored: {', '.join(result['xattrs_not_restored'])}"
            )
    return _restored(ctx, vault, record)


def undo_startupfolder(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    return undo_file(ctx, vault, record)


def _restored(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    record["state"] = "restored"
    record["restored_by"] = ctx.requested_by
    record["restored_at"] = now_iso_seconds()
    vault.save(record)
    return record


def _lstat(shown: str) -> os.stat_result | None:
    try:
        return os.lstat(unescape_to_bytes(shown))
    except (FileNotFoundError, NotADirectoryError):
        return None



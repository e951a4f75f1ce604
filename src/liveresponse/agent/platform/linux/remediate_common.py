"""What the Linux remediations share: a record's life, and quarantine with its undo (SPEC §5 ``remediate``, ``undo``).

- A record's life: saved "remediating" before the first change and "remediated"
  at the end (``remediation``). An ordinary failure before anything changed
  forgets the record; one after a change keeps it, "remediated", with where it
  stopped in ``left``, so undo can reverse what was done. Undo marks each item
  restored as it goes (a failure half-way names what was done, ``undoing``), then
  the record "restored", and returns what undo itself did (``finish_undo``).
- Quarantine through the vault unless the file is protected (protected.py;
  -force overrides), the record saved with the item before the original goes;
  and the undo of quarantined files: every conflict checked before anything is
  put back, each item marked restored as it goes.

Elsewhere: stopping processes in process_stop.py, the processes never stopped in
protected_processes.py, a unit's links in remediate_links.py, systemctl in
systemd_control.py.

Paths handed around are *inside* paths of the collector root (``FsRoot``); the
record keeps their escaped text form (protocol/names.py), so any byte survives JSON.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import protected
from liveresponse.agent.platform.linux.file_metadata import group_name, owner_name
from liveresponse.agent.platform.linux.nofollow_paths import conflict
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import UNRECORDED_PARENT, Vault
from liveresponse.agent.quarantine_records import now_iso_seconds
from liveresponse.protocol.errors import CommandFailed, LiveResponseError
from liveresponse.protocol.names import escape_bytes, escape_text, unescape_to_bytes

Record = dict[str, Any]


# ---------------------------------------------------------------- text forms


def text_of(path: str) -> str:
    """Record form of an inside path (str, surrogate-escaped) or of raw bytes."""
    return escape_text(path)


def inside_of(text: str) -> str:
    """Back from the record form to an inside path."""
    return os.fsdecode(unescape_to_bytes(text))


# ---------------------------------------------------------------- a record's life


def begin(vault: Vault, record: Record) -> None:
    """Save the new record as in progress: an agent that dies now leaves it for undo (quarantine.py)."""
    record["state"] = "remediating"
    vault.save(record)


def finish(vault: Vault, record: Record) -> Record:
    record["state"] = "remediated"
    vault.save(record)
    return record


def changed(record: Record, action: str) -> None:
    """Note a change made on the device: from now on the record has something to undo."""
    record["actions"].append(action)
    record["_changed"] = True


@contextlib.contextmanager
def remediation(vault: Vault, record: Record) -> Iterator[Record]:
    """The record saved "remediating" for the block, "remediated" after it (see the module docstring)."""
    begin(vault, record)
    try:
        yield record
    except (LiveResponseError, OSError) as error:
        reason = error.message if isinstance(error, LiveResponseError) else _os_reason(error)
        if not record.get("_changed"):
            vault.drop_record(record)
            if isinstance(error, LiveResponseError):
                raise
            raise CommandFailed(f"{reason}; nothing was done") from None
        record["left"].append(f"stopped at an error: {reason}")
        finish(vault, record)
        done = "; ".join(record["actions"])
        raise CommandFailed(
            f"{reason}; {record['id']} stopped there, after: {done} (undo {record['type']} {record['id']} reverses it)"
        ) from None
    finish(vault, record)


def _os_reason(error: OSError) -> str:
    where = f" ({escape_bytes(os.fsencode(error.filename))})" if error.filename else ""
    return f"{error.strerror or error}{where}"


def check_restorable(record: Record) -> None:
    if record.get("state") not in ("remediated", "remediating"):
        raise CommandFailed(f"{record.get('id')} is {record.get('state')}: nothing to undo")


@contextlib.contextmanager
def undoing(record: Record, actions: list[str]) -> Iterator[None]:
    """An undo's steps, each item marked restored as it goes: a failure after some says which were done."""
    try:
        yield
    except LiveResponseError as error:
        if not actions:
            raise
        done = "; ".join(actions)
        raise CommandFailed(f"{error.message}; the undo of {record['id']} stopped there, after: {done}") from None


def finish_undo(vault: Vault, record: Record, ctx: CommandContext, actions: list[str], left: list[str]) -> Record:
    """Mark the record restored, save it, and return it with the undo's own actions and leftovers.

    The saved record keeps the remediation's ``actions``/``left`` and gains ``undo_actions``/``undo_left``;
    what undo returns shows what undo did.
    """
    record["state"] = "restored"
    record["restored_by"] = ctx.requested_by or None
    record["restored_at"] = now_iso_seconds()
    record["undo_actions"] = actions
    record["undo_left"] = left
    vault.save(record)
    return {**record, "actions": actions, "left": left}


# ---------------------------------------------------------------- quarantine and its undo


def protection_reason(path: bytes, state_dir: Path | None, checker: protected.Protection | None = None) -> str | None:
    """Why ``path`` stays in place without -force (protected.py), or None."""
    if checker is not None:
        return checker.reason(path, state_dir)
    return protected.protection(path, state_dir)


def quarantine_unless_protected(
    vault: Vault,
    record: Record,
    path: bytes,
    force: bool,
    state_dir: Path | None,
    *,
    shown: str | None = None,
    role: str | None = None,
    expect: dict[str, Any] | None = None,
    checker: protected.Protection | None = None,
) -> dict[str, Any] | None:
    """Quarantine the file at host ``path`` into ``record``; its item, or None when it stays.

    The vault saves the record ("remediating") with the item before the original goes. A protected
    file stays without ``force`` and ``left`` says why; with it, the action says what was forced.
    ``shown`` is the path as the analyst knows it (the inside path of a collector root).
    """
    shown = shown or escape_bytes(path)
    reason = protection_reason(path, state_dir, checker)
    if reason is not None and not force:
        record["left"].append(f"left {shown} in place: {reason}; -force quarantines it")
        return None
    details = {key: value for key, value in (("role", role), ("forced", reason)) if value is not None}
    record["state"] = "remediating"
    item = vault.quarantine_file(path, expect, record=record, details=details)
    what = f"{role} {shown}" if role else shown
    forced = f" (-force: {reason})" if reason else ""
    changed(record, f"quarantined {what} ({item['size']} bytes, sha256 {item['sha256']}){forced}")
    if item["links"] > 1:
        others = item["links"] - 1
        record["left"].append(
            f"{shown} had {item['links']} hard links: its content stays reachable under the other {others}"
        )
    if record.get("sha256") is None:
        record["sha256"] = item["sha256"]
    vault.save(record)
    return item


def pending_files(record: Record) -> list[dict[str, Any]]:
    """The quarantined files of a record not restored yet."""
    return [item for item in record.get("items") or [] if item.get("kind") == "file" and not item.get("restored")]


def file_conflicts(vault: Vault, items: list[dict[str, Any]]) -> list[str]:
    return [place for item in items for place in vault.restore_conflicts(item)]


def restore_files(
    vault: Vault, record: Record, items: list[dict[str, Any]], actions: list[str], left: list[str]
) -> None:
    """Put each quarantined file back (conflicts checked by the caller), marking each restored as it goes."""
    for item in items:
        what = f"{item['role']} {item['path']}" if item.get("role") else item["path"]
        if vault.original_in_place(item):
            vault.discard_blob(item)
            interrupted = record["state"] == "remediating"
            why = "the remediation was interrupted before removing it" if interrupted else "nothing to put back"
            actions.append(f"{what} is in place, unchanged: {why}")
        else:
            result = vault.restore_file(item)
            recorded = {parent["path"]: parent for parent in item.get("parents") or []}
            for made in result["created_parents"]:
                parent = recorded.get(made, UNRECORDED_PARENT)
                owner = f"{owner_name(parent['uid'])}:{group_name(parent['gid'])}"
                actions.append(f"re-created directory {made} with mode {parent['mode']:04o}, owner {owner}")
            actions.append(
                f"restored {what} (sha256 {result['sha256']}) with mode {int(item['mode']):04o},"
                f" owner {item['owner']}:{item['group']}, mtime {iso_utc_from_ns(int(item['mtime_ns']))}"
            )
            if result.get("xattrs_not_restored"):
                left.append(f"extended attributes of {what} not restored: {', '.join(result['xattrs_not_restored'])}")
        item["restored"] = True
        vault.save(record)


def undo_quarantine(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    """Undo of a remediation that quarantined files and did nothing else (file, autostart entry, at job...)."""
    check_restorable(record)
    items = pending_files(record)
    if not items and record["state"] == "remediating":
        interrupted = "the remediation was interrupted before anything was quarantined: nothing to restore"
        return finish_undo(vault, record, ctx, [interrupted], [])
    if not items:
        why = "; ".join(record.get("left") or [])
        raise CommandFailed(f"nothing to do: {record['id']} quarantined nothing" + (f" ({why})" if why else ""))
    conflicts = file_conflicts(vault, items)
    if conflicts:
        raise conflict(conflicts)
    actions: list[str] = []
    left: list[str] = []
    with undoing(record, actions):
        restore_files(vault, record, items, actions, left)
    return finish_undo(vault, record, ctx, actions, left)

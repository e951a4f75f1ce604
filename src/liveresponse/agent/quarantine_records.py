"""The vault's records: one JSON file per remediation, saying what was done, by whom, and how to undo it.

``records/<rem_id>.json`` (0600, written atomically and its directory fsynced)
holds who (from the envelope), when, the session and command id, the actions in
plain words, what was left and why, the state (``remediating`` while it runs,
``remediated``, ``restored``) and the items to undo it (DR-14). Items of kind
"file" are the vault's (quarantine.py); links, cron lines and service states
belong to their remediation modules and are stored as given.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.nofollow_paths import fsync_dir
from liveresponse.agent.state import write_atomic
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import resolve_lexically

_RECORD_ID = re.compile(r"^rem_[0-9a-f]{12}$")


def is_record_id(text: str) -> bool:
    return bool(_RECORD_ID.match(text))


def now_iso_seconds() -> str:
    """The time form of records (whole seconds, UTC): remediated_at and restored_at."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the analyst sees it: without the vault's internals (items, ordering)."""
    return {k: v for k, v in record.items() if k != "items" and not k.startswith("_")}


class RecordStore:
    """The records of one vault, in ``records_dir``; ``_ready`` makes the vault's directories."""

    records_dir: Path

    def _ready(self) -> None:
        raise NotImplementedError

    def new_record(self, type: str, entity: str, ctx: CommandContext) -> dict[str, Any]:
        return {
            "id": "rem_" + secrets.token_hex(6),
            "type": type,
            "entity": entity,
            "state": "remediated",
            "actions": [],
            "left": [],
            "path": None,
            "sha256": None,
            "remediated_by": ctx.requested_by,
            "remediated_at": now_iso_seconds(),
            "session_id": ctx.session_id,
            "command_id": ctx.command_id,
            "restored_by": None,
            "restored_at": None,
            "items": [],
            "_created_ns": time.time_ns(),  # orders records made within one second
        }

    def _record_path(self, record_id: str) -> Path:
        if not is_record_id(record_id):
            raise NotFound(f"{record_id!r} is not a remediation id (rem_ and 12 hex digits)")
        return self.records_dir / f"{record_id}.json"

    def save(self, record: dict[str, Any]) -> None:
        self._ready()
        write_atomic(self._record_path(record["id"]), json.dumps(record, indent=1).encode())
        fsync_dir(self.records_dir)

    def drop_record(self, record: dict[str, Any]) -> None:
        """Forget a record whose remediation changed nothing."""
        self._record_path(record["id"]).unlink(missing_ok=True)
        if self.records_dir.exists():
            fsync_dir(self.records_dir)

    def get(self, record_id: str) -> dict[str, Any] | None:
        if not is_record_id(record_id):
            return None
        try:
            loaded: dict[str, Any] = json.loads(self._record_path(record_id).read_text())
        except FileNotFoundError:
            return None
        return loaded

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        try:
            names = sorted(os.listdir(self.records_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                record = self.get(name[: -len(".json")])
                if record is not None:
                    found.append(record)
        found.sort(key=lambda r: (r.get("remediated_at") or "", r.get("_created_ns") or 0))
        return found

    def find_for_undo(self, type: str, ident: str) -> dict[str, Any]:
        """The record to undo: by id, else the newest not yet restored one of this entity."""
        by_id = self.get(ident) if is_record_id(ident) else None
        if by_id is not None:
            if by_id["type"] != type:
                raise CommandFailed(
                    f"{ident} is a {by_id['type']} remediation of {by_id['entity']}: undo {by_id['type']} {ident}"
                )
            if by_id["state"] == "restored":
                raise CommandFailed(_already_restored(by_id))
            return by_id
        wanted = _entity_key(type, ident)
        matching = [r for r in self.records() if r["type"] == type and _entity_key(type, r["entity"]) == wanted]
        if not matching:
            raise NotFound(f"no {type} remediation of {ident} on this device ('remediate list' shows them)")
        open_ones = [r for r in matching if r["state"] != "restored"]
        if not open_ones:
            latest = max(matching, key=lambda r: r.get("restored_at") or "")
            raise CommandFailed(_already_restored(latest))
        return open_ones[-1]


def _already_restored(record: dict[str, Any]) -> str:
    return f"nothing to do: {record['id']} was already restored at {record['restored_at']} by {record['restored_by']}"


def _entity_key(type: str, entity: str) -> str:
    if type in ("file", "startupfolder") and entity.startswith("/"):
        return resolve_lexically("/", entity)
    if type == "service":
        return entity.removesuffix(".service")  # systemd's own rule: "ssh" names ssh.service
    return entity

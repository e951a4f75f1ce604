"""How store rows look in API answers (SPEC §3, §9 field names)."""

from __future__ import annotations

import json
import time
from typing import Any

from liveresponse.server.store.models import Command, Device, DeviceGroup, Session, User
from liveresponse.server.timestamps import iso_millis


def device_row(device: Device, group: DeviceGroup | None, online: bool) -> dict[str, Any]:
    return {
        "id": device.id,
        "name": device.name,
        "os": device.os,
        "type": device.device_type,
        "group": None if group is None else group.name,
        "status": "online" if online else "offline",
        "last_seen": iso_millis(device.last_seen),
        "agent_version": device.agent_version,
    }


def session_row(session: Session, user: User, device: Device) -> dict[str, Any]:
    end = session.ended_at if session.ended_at is not None else time.time()
    return {
        "id": session.id,
        "device": device.name,
        "device_id": device.id,
        "user": user.name,
        "started": iso_millis(session.started_at),
        "ended": iso_millis(session.ended_at),
        "duration_s": round(end - session.started_at, 3),
        "status": "open" if session.ended_at is None else "ended",
        "end_reason": session.end_reason,
        "cwd": session.cwd,
    }


def command_row(cmd: Command, full_output: str | None = None) -> dict[str, Any]:
    output_text = full_output if full_output is not None else cmd.output
    output: Any = None
    if output_text is not None:
        try:
            output = json.loads(output_text)
        except ValueError:
            output = output_text  # a preview of a large output: text with its truncation note
    return {
        "id": cmd.id,
        "session_id": cmd.session_id,
        "user": cmd.user_name,
        "device": cmd.device_name,
        "command_line": cmd.command_line,
        "command": cmd.command,
        "started": iso_millis(cmd.started_at),
        "ended": iso_millis(cmd.ended_at),
        "duration": None if cmd.ended_at is None else round(cmd.ended_at - cmd.started_at, 6),
        "status": cmd.status,
        "output": output,
        "output_bytes": cmd.output_bytes,
        "output_truncated": cmd.output_blob is not None and full_output is None,
        "errors": cmd.errors,
    }

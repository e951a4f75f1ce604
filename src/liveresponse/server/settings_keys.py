"""Tenant setting keys, their types and defaults (SPEC §3). Sizes are bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liveresponse.protocol.errors import LiveResponseError

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class SettingKey:
    name: str
    type: type
    default: Any
    help: str


SETTING_KEYS: dict[str, SettingKey] = {
    k.name: k
    for k in (
        SettingKey("live_response_enabled", bool, False, "allow live response sessions at all"),
        SettingKey("live_response_servers_enabled", bool, False, "allow sessions on devices of type server"),
        SettingKey("unsigned_scripts_allowed", bool, False, "allow run of library scripts without a signature"),
        SettingKey("max_sessions", int, 10, "concurrent sessions per tenant"),
        SettingKey("sessions_per_user", int, 1, "concurrent sessions per user"),
        SettingKey("sessions_per_device", int, 1, "concurrent sessions per device"),
        SettingKey("idle_timeout_s", int, 300, "seconds without activity before a session ends"),
        SettingKey("command_timeout_s", int, 600, "seconds before a command times out"),
        SettingKey("long_command_timeout_s", int, 1800, "timeout of getfile, findfile, run and analyze, in seconds"),
        SettingKey("getfile_max_bytes", int, 3 * GIB, "largest file getfile collects, in bytes (3 GiB)"),
        SettingKey("fileinfo_hash_max_bytes", int, 10 * GIB, "largest file fileinfo hashes, in bytes (10 GiB)"),
        SettingKey("library_max_bytes", int, 250 * MIB, "largest library file, in bytes (250 MiB)"),
    )
}


class SettingError(LiveResponseError):
    code = "bad_setting"


def parse_value(key: str, text: str) -> Any:
    """Validate a setting given as text (the admin CLI and the API both come here)."""
    spec = SETTING_KEYS.get(key)
    if spec is None:
        raise SettingError(f"unknown setting {key!r}; known: {', '.join(sorted(SETTING_KEYS))}")
    if spec.type is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise SettingError(f"{key} takes true or false, not {text!r}")
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{key} takes a whole number, not {text!r}") from None
    if value < 0:
        raise SettingError(f"{key} cannot be negative")
    return value


def encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

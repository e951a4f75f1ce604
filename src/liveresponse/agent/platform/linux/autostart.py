"""XDG autostart entries (the "Desktop Application Autostart Specification").

System entries live in ``/etc/xdg/autostart`` and start for every user who
opens a graphical session; a user's own are in ``~/.config/autostart``. A
user's file with the same name as a system one replaces it for that user
(``overrides`` says so). ``Hidden=true`` or ``X-GNOME-Autostart-enabled=false``
disable an entry; it is still listed, with ``enabled`` false, since its
presence is a fact the analyst should see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from liveresponse.agent.platform.linux.passwd import ALL_USERS, User, home_path
from liveresponse.agent.platform.linux.rootfs import Reader
from liveresponse.protocol.names import escape_text

SYSTEM_AUTOSTART_DIRS = ("/etc/xdg/autostart",)
USER_AUTOSTART_DIR = ".config/autostart"


@dataclass(frozen=True)
class AutostartEntry:
    path: str
    user: str
    name: str | None
    exec: str | None
    enabled: bool
    only_show_in: str | None
    overrides: str | None  # the system entry this user entry replaces


def parse_desktop_entry(data: bytes) -> dict[str, str]:
    """Keys of the [Desktop Entry] group (unlocalised ones only)."""
    values: dict[str, str] = {}
    group = None
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and group == "Desktop Entry" and "[" not in key:
            values[key.strip()] = value.strip()
    return values


def _entry(reader: Reader, path: str, user: str, overrides: str | None) -> AutostartEntry | None:
    data = reader.read(path)
    if data is None:
        return None
    values = parse_desktop_entry(data)
    enabled = values.get("Hidden", "").lower() != "true" and (
        values.get("X-GNOME-Autostart-enabled", "true").lower() != "false"
    )
    name, command = values.get("Name"), values.get("Exec")
    return AutostartEntry(
        path,
        user,
        escape_text(name) if name is not None else None,
        escape_text(command) if command is not None else None,
        enabled,
        values.get("OnlyShowIn"),
        overrides,
    )


def collect_autostart(reader: Reader, users: list[User]) -> Iterator[AutostartEntry]:
    system: dict[str, str] = {}
    for directory in SYSTEM_AUTOSTART_DIRS:
        for path in reader.files_in(directory):
            if path.endswith(".desktop"):
                system.setdefault(path.rsplit("/", 1)[1], path)
                if (entry := _entry(reader, path, ALL_USERS, None)) is not None:
                    yield entry
    for user in users:
        for path in reader.files_in(home_path(user, USER_AUTOSTART_DIR)):
            if path.endswith(".desktop"):
                entry = _entry(reader, path, user.name, system.get(path.rsplit("/", 1)[1]))
                if entry is not None:
                    yield entry

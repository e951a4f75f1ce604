"""``persistence``: every known way to make something run again (SPEC §5).

Mechanisms (``mechanism`` field), each for the system and for every user of
``<root>/etc/passwd``: ``cron``, ``at``, ``systemd`` (enabled units: wants /
requires / upholds links, system and user, with ExecStart; timers, sockets and
path units with the service they start), ``sysv`` (init scripts with start
links), ``rc.local``, ``shell-startup``, ``ld.so.preload``,
``ssh-authorized-keys``, ``xdg-autostart``, ``udev``, ``modules-load``,
``modprobe``, ``update-motd``.

Row: ``mechanism, location, line, user, entry, command, modified, sha256`` plus
``target`` (the executable or file hashed), ``checked`` and ``reason``, and
per-mechanism details (``schedule``, ``key_type``, ``fingerprint``...).

* ``location`` is the file (or link) holding the entry, as a path inside the
  collector root; ``modified`` is that file's mtime (a link's own mtime for
  systemd: when the unit was enabled).
* ``sha256`` is of ``target``: the program the command starts (absolute path,
  else looked up in the usual PATH), or the script or file that itself runs
  (a cron.daily script, a shell start-up file, a preloaded library). Null when
  it cannot be resolved.
* ``user`` is who it runs as; ``(all users)`` for what runs for whoever logs in.

Silence means "checked, nothing there". The other outcomes say so, one row
each, with ``entry``/``command`` null:

* a location that exists but cannot be read: ``checked: false``, ``reason:
  "not checked: permission denied reading /var/spool/cron/crontabs"`` (or the
  system's wording for another error, e.g. "is a directory");
* a mechanism none of whose locations exists: one summary row, ``checked:
  true``, ``reason: "absent: none of ... exists"``, so an analyst can tell
  "nothing there" from "not looked at" without a row per missing file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from liveresponse.agent.platform.linux.cron import first_word
from liveresponse.agent.platform.linux.passwd import User, read_users, users_with_homes
from liveresponse.agent.platform.linux.rootfs import COMMAND_SEARCH_PATH, FsRoot, Reader, show
from liveresponse.protocol.names import unescape_to_bytes

Row = dict[str, Any]


def program_of(fs: FsRoot, command: str | None, search: tuple[str, ...] = COMMAND_SEARCH_PATH) -> str | None:
    """Inside path of the program a command line starts, when it can be found."""
    if not command:
        return None
    word = first_word(command)
    return fs.find_command(unescape_to_bytes(word).decode("utf-8", "surrogateescape"), search) if word else None


@dataclass
class Scan:
    """The rows one mechanism produces, and the reads it made."""

    mechanism: str
    fs: FsRoot
    reader: Reader
    rows: list[Row] = field(default_factory=list)

    def add(
        self,
        location: str,
        *,
        line: int | None = None,
        user: str | None = None,
        entry: str | None = None,
        command: str | None = None,
        target: str | None = None,
        **details: Any,
    ) -> None:
        self.rows.append(
            {
                "mechanism": self.mechanism,
                "location": show(location),
                "line": line,
                "user": user,
                "entry": entry,
                "command": command,
                "modified": self.fs.modified(location),
                "sha256": self.fs.sha256(target) if target else None,
                "target": show(target) if target else None,
                "checked": True,
                "reason": None,
                **details,
            }
        )

    def outcome_rows(self, where: str) -> list[Row]:
        """Rows for unreadable locations, or the absent summary."""
        extra = [self._status(path, False, reason) for path, reason in self.reader.problems]
        if not self.rows and not extra and not self.reader.seen:
            extra.append(self._status(where, True, f"absent: none of {where} exists"))
        return extra

    def _status(self, location: str, checked: bool, reason: str) -> Row:
        return {
            "mechanism": self.mechanism, "location": show(location), "line": None, "user": None, "entry": None,
            "command": None, "modified": None, "sha256": None, "target": None, "checked": checked, "reason": reason,
        }  # fmt: skip


@dataclass(frozen=True)
class Mechanism:
    name: str
    where: str  # the locations examined, for the absent summary
    collect: Callable[[Scan, list[User], list[User]], None]  # (scan, every user, one per home)


def mechanisms() -> list[Mechanism]:
    # Imported here: the mechanism modules import Scan from this one.
    from liveresponse.agent.platform.linux import persistence_boot, persistence_login

    return [*persistence_boot.MECHANISMS, *persistence_login.MECHANISMS]


def collect_persistence(fs: FsRoot, between_rows: Callable[[], None] = lambda: None) -> Iterator[Row]:
    """Every mechanism's rows; ``between_rows`` is called before each (cancellation)."""
    passwd_reader = Reader(fs)
    users = read_users(fs, passwd_reader)
    homes = users_with_homes(users)
    for path, reason in passwd_reader.problems:
        between_rows()
        yield Scan("passwd", fs, passwd_reader)._status(path, False, f"{reason}: per-user mechanisms not checked")
    for mechanism in mechanisms():
        between_rows()
        scan = Scan(mechanism.name, fs, Reader(fs))
        mechanism.collect(scan, users, homes)
        for row in scan.rows + scan.outcome_rows(mechanism.where):
            between_rows()
            yield row

"""The device's own policy: what this device refuses, whatever the server sends (SPEC §11).

A TOML file owned by the device's operator, read by the agent at start and again
whenever it changes (checked before every command)::

    # /etc/liveresponse/agent-policy.toml  (or lr agent run --policy FILE, or LR_AGENT_POLICY)
    forbid = ["remediation", "run", "putfile"]
    getfile_max_bytes = 104857600

``forbid`` takes command classes — ``remediation`` (remediate and undo), ``run``,
``putfile``, ``getfile``, ``analyze`` — or any agent command name. ``remediate
list`` only reads the device's records and stays allowed. ``getfile_max_bytes``
caps collection below the tenant's setting (the smaller of the two applies).

Fail closed: a policy file that cannot be read or parsed, or names a class this
agent does not know, stops the agent at start; if it turns bad later, every
command is refused, naming the file and the error, until it is fixed. A policy
file named explicitly (option or environment) must exist; the default path may
be absent, which means no device restrictions.
"""

from __future__ import annotations

import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.protocol.catalogue import COMMANDS, Runs
from liveresponse.protocol.errors import LiveResponseError

DEFAULT_POLICY_FILE = Path("/etc/liveresponse/agent-policy.toml")

CLASSES: dict[str, tuple[str, ...]] = {
    "remediation": ("remediate", "undo"),
    "run": ("run",),
    "putfile": ("putfile",),
    "getfile": ("getfile",),
    "analyze": ("analyze",),
}
_AGENT_COMMANDS = frozenset(c.name for c in COMMANDS if c.runs is Runs.AGENT)
_KEYS = frozenset({"forbid", "getfile_max_bytes"})


class PolicyError(LiveResponseError):
    """The policy file is unusable; the agent fails closed."""

    code = "device_policy_invalid"


class PolicyRefused(LiveResponseError):
    """A command this device's policy forbids."""

    code = "device_policy"
    http_status = 403


@dataclass(frozen=True)
class Policy:
    source: str = ""  # the file it came from; "" when there is none
    forbidden: dict[str, str] = field(default_factory=dict)  # command name -> the class that forbids it
    getfile_max_bytes: int | None = None


def parse_policy(text: str, source: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"device policy {source} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise PolicyError(
            f"device policy {source}: unknown key(s) {', '.join(unknown)}; known: forbid, getfile_max_bytes"
        )
    forbid = data.get("forbid", [])
    if not isinstance(forbid, list) or not all(isinstance(item, str) for item in forbid):
        raise PolicyError(f'device policy {source}: forbid must be a list of strings, e.g. forbid = ["remediation"]')
    forbidden: dict[str, str] = {}
    for item in forbid:
        name = item.strip().lower()
        if name in CLASSES:
            for command in CLASSES[name]:
                forbidden[command] = name
        elif name in _AGENT_COMMANDS:
            forbidden[name] = name
        else:
            known = ", ".join([*CLASSES, "or an agent command name"])
            raise PolicyError(f"device policy {source}: cannot forbid {item!r}: known classes are {known}")
    cap = data.get("getfile_max_bytes")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise PolicyError(f"device policy {source}: getfile_max_bytes must be a whole number of bytes, not {cap!r}")
    return Policy(source, forbidden, cap)


class PolicyFile:
    """The policy as the file says now: reloaded when its size or modification time changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.explicit = path is not None
        self.path = path or DEFAULT_POLICY_FILE
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._policy = Policy()
        self._error: PolicyError | None = None

    def current(self) -> Policy:
        """The policy in force; raises PolicyError (fail closed) while the file is unusable."""
        with self._lock:
            try:
                info = os.stat(self.path)
            except FileNotFoundError:
                if self.explicit:
                    self._error = PolicyError(f"device policy {self.path} is missing (named by --policy)")
                    raise self._error from None
                self._seen, self._policy, self._error = None, Policy(), None
                return self._policy
            except OSError as exc:
                self._error = PolicyError(f"device policy {self.path} cannot be read: {exc.strerror}")
                raise self._error from None
            seen = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)  # ctime: no touch -d hides an edit
            if seen != self._seen:
                self._seen = seen
                try:
                    text = self.path.read_text(encoding="utf-8-sig")  # a byte-order mark is not an error
                    self._policy, self._error = parse_policy(text, str(self.path)), None
                except UnicodeDecodeError:
                    self._error = PolicyError(f"device policy {self.path} is not UTF-8 text")
                except OSError as exc:
                    self._error = PolicyError(f"device policy {self.path} cannot be read: {exc.strerror}")
                except PolicyError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            return self._policy

    def check(self, command: str, args: dict[str, Any]) -> Policy:
        """Refuse a command the policy forbids; returns the policy for limits (getfile)."""
        policy = self.current()
        what = policy.forbidden.get(command)
        if what is None or (command == "remediate" and args.get("type") == "list"):
            return policy
        members = CLASSES.get(what, (what,))
        named = what if members == (what,) else f"{what} ({', '.join(members)})"
        raise PolicyRefused(
            f"refused by this device's policy ({policy.source}): {named} is forbidden on this device",
            policy=policy.source,
            forbidden=what,
        )

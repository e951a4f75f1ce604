"""Files a remediation leaves in place unless forced: package-owned, core system, the agent's own (SPEC §5).

Quarantining ``/usr/bin/sleep`` because a malicious process ran it would break
the device and remove nothing malicious, so such files need ``-force``. A path
is protected when:

* an installed package owns it: dpkg's file lists (``/var/lib/dpkg/info/*.list``,
  read into one index kept for a minute), or ``rpm -qf`` where an rpm database
  and the rpm command exist;
* it is a core system path (``/boot``, ``/bin``, ``/lib*``, ``/usr/bin``,
  ``/usr/lib*``, the account, sudo, PAM and loader files of ``/etc``...);
* it belongs to the agent: its Python installation, its package, its state
  directory (the vault itself lives there).

A path is checked as given, as its real path, and under both spellings of a
merged ``/usr`` (``/bin`` a link to ``usr/bin``): dpkg lists ``/bin/sleep`` where
the file is ``/usr/bin/sleep`` on merged systems, and the other way round for
packages built since the merge.

``/etc/ld.so.preload`` is deliberately not protected: it is a persistence
mechanism (SPEC §5 persistence) that an analyst must be able to remediate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import liveresponse
from liveresponse.protocol.names import escape_bytes

DPKG_INFO_DIR = "/var/lib/dpkg/info"
RPM_DB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
INDEX_TTL_S = 60.0
RPM_TIMEOUT_S = 10.0

_CORE_TOP = {b"boot", b"bin", b"sbin"}  # and every /lib*
_CORE_USR = {b"bin", b"sbin", b"libexec"}  # and every /usr/lib*
_CORE_ETC = {
    b"passwd",
    b"shadow",
    b"group",
    b"gshadow",
    b"sudoers",
    b"sudoers.d",
    b"fstab",
    b"ld.so.cache",
    b"ld.so.conf",
    b"ld.so.conf.d",
    b"pam.conf",
    b"pam.d",
    b"security",
    b"nsswitch.conf",
    b"login.defs",
    b"inittab",
    b"machine-id",
}
_MERGED_USR_DIRS = (b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32")
# Prefixes too general to protect whole: a Python installed there is protected by its own directories.
_GENERAL_PREFIXES = {"/", "/usr", "/usr/local", "/opt", "/home", "/root", "/srv", "/var"}


def _agent_paths() -> list[bytes]:
    """Where the running agent's Python and package live."""
    places = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    places = [p for p in places if os.path.normpath(p) not in _GENERAL_PREFIXES]
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with_key = sysconfig.get_paths().get(key)
        if with_key:
            places.append(with_key)
    places.append(os.path.realpath(sys.executable))
    places.append(os.path.dirname(os.path.abspath(liveresponse.__file__)))
    unique: list[bytes] = []
    for place in places:
        for spelling in {os.path.abspath(place), os.path.realpath(place)}:
            encoded = os.fsencode(spelling)
            if encoded not in unique:
                unique.append(encoded)
    return unique


def _under(path: bytes, prefix: bytes) -> bool:
    return path == prefix or path.startswith(prefix.rstrip(b"/") + b"/")


def core_system_reason(path: bytes) -> str | None:
    parts = path.split(b"/")
    if len(parts) < 2 or parts[0] != b"":
        return None
    top = parts[1]
    if top in _CORE_TOP or top.startswith(b"lib"):
        return f"a core system path (/{escape_bytes(top)})"
    if top == b"usr" and len(parts) > 2 and (parts[2] in _CORE_USR or parts[2].startswith(b"lib")):
        return f"a core system path (/usr/{escape_bytes(parts[2])})"
    if top == b"etc" and len(parts) > 2 and parts[2] in _CORE_ETC:
        return f"a core system path (/etc/{escape_bytes(parts[2])})"
    return None


class Protection:
    """Decides whether a path is protected. One instance caches the dpkg index for INDEX_TTL_S."""

    def __init__(
        self,
        dpkg_info_dir: str = DPKG_INFO_DIR,
        rpm_db_dirs: Iterable[str] = RPM_DB_DIRS,
        agent_paths: Iterable[bytes] | None = None,
        core_paths: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dpkg_info_dir = dpkg_info_dir
        self.rpm_db_dirs = tuple(rpm_db_dirs)
        self.agent_paths = list(agent_paths) if agent_paths is not None else _agent_paths()
        self.core_paths = core_paths
        self.clock = clock
        self._index: dict[bytes, str] = {}
        self._index_at: float | None = None
        self._guard = threading.Lock()

    def reason(self, path: bytes, state_dir: Path | None = None) -> str | None:
        """Why ``path`` must not be quarantined without -force, or None."""
        spellings = self.spellings(path)
        for spelling in spellings:
            owner = self._dpkg_owner(spelling)
            if owner is not None:
                return f"owned by package {owner} (dpkg)"
        owner = self._rpm_owner(path)
        if owner is not None:
            return f"owned by package {owner} (rpm)"
        if self.core_paths:
            for spelling in spellings:
                core = core_system_reason(spelling)
                if core is not None:
                    return core
        if state_dir is not None:
            for state in {os.fsencode(os.path.abspath(state_dir)), os.fsencode(os.path.realpath(state_dir))}:
                if any(_under(spelling, state) for spelling in spellings):
                    return f"inside the agent's state directory ({escape_bytes(state)})"
        for place in self.agent_paths:
            if any(_under(spelling, place) for spelling in spellings):
                return f"part of the agent's own installation ({escape_bytes(place)})"
        return None

    @staticmethod
    def spellings(path: bytes) -> list[bytes]:
        """The path, its real path, and each under the other spelling of a merged /usr."""
        found = [path]
        real = os.path.realpath(path)
        if real not in found:
            found.append(real)
        for candidate in list(found):
            for name in _MERGED_USR_DIRS:
                top, usr = b"/" + name, b"/usr/" + name
                if os.path.realpath(top) != usr:
                    continue  # not merged: /bin and /usr/bin are different directories here
                if _under(candidate, top):
                    alias = usr + candidate[len(top) :]
                elif _under(candidate, usr):
                    alias = top + candidate[len(usr) :]
                else:
                    continue
                if alias not in found:
                    found.append(alias)
        return found

    def _dpkg_owner(self, path: bytes) -> str | None:
        return self._dpkg_index().get(path)

    def _dpkg_index(self) -> dict[bytes, str]:
        with self._guard:
            now = self.clock()
            if self._index_at is None or now - self._index_at > INDEX_TTL_S:
                self._index = _read_dpkg_lists(self.dpkg_info_dir)
                self._index_at = now
            return self._index

    def _rpm_owner(self, path: bytes) -> str | None:
        rpm = shutil.which("rpm")
        if rpm is None or not any(os.path.isdir(d) for d in self.rpm_db_dirs):
            return None
        try:
            done = subprocess.run(
                [rpm, "-qf", "--queryformat", "%{NAME}\\n", path],
                capture_output=True,
                timeout=RPM_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        names = done.stdout.decode("utf-8", "replace").split()
        return names[0] if names else None


def _read_dpkg_lists(directory: str) -> dict[bytes, str]:
    """path -> package, from every ``PACKAGE.list`` (``libc6:amd64.list`` names ``libc6:amd64``)."""
    index: dict[bytes, str] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return index
    for name in sorted(names):
        if not name.endswith(".list"):
            continue
        package = name[: -len(".list")]
        try:
            with open(os.path.join(directory, name), "rb") as listing:
                data = listing.read()
        except OSError:
            continue
        for line in data.split(b"\n"):
            if line.startswith(b"/"):
                index.setdefault(line, package)
    return index


_DEFAULT = Protection()


def protection(path: bytes, state_dir: Path | None = None) -> str | None:
    """Why ``path`` is protected (package-owned, core system, the agent's), or None."""
    return _DEFAULT.reason(path, state_dir)

"""The collector root: every file a collector reads is read under it.

The agent can be pointed at another file-system root (a mounted disk image) so
the same collectors examine it. Collectors speak in *inside* paths — the path as
it appears within the root, e.g. ``/etc/crontab`` — and output those, so a row
reads the same on the live system and on an image; rows of an offline root also
carry ``root`` so nobody mistakes them for the live machine.

Symbolic links are followed *inside* the root: on an image, ``/usr/bin/foo ->
/etc/alternatives/foo`` must land in the image, never on the analyst's host.

:class:`Reader` wraps the reads a collector makes and remembers what it saw, so
a collector can say "absent" or "not checked: permission denied reading X"
instead of staying silent (SPEC §5: mechanisms that cannot be checked say so).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field

from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.protocol.names import escape_text

_MAX_LINK_HOPS = 40
_HASH_CHUNK_BYTES = 1024 * 1024
# Where a bare command name is looked up, in the order a root shell would.
COMMAND_SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def show(path: str) -> str:
    """Output form of an inside path (non-UTF-8 bytes escaped, SPEC §5)."""
    return escape_text(path)


def reason_for(error: OSError, path: str) -> str:
    """Human reason for a failed read, prefixed the way the issue asks for."""
    if isinstance(error, PermissionError):
        return f"not checked: permission denied reading {show(path)}"
    text = error.strerror or type(error).__name__
    return f"not checked: {text.lower()} reading {show(path)}"


@dataclass
class FsRoot:
    root: str = "/"
    _hashes: dict[str, str | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = os.path.abspath(self.root or "/")

    @property
    def live(self) -> bool:
        return self.root == "/"

    def resolve(self, path: str) -> str:
        """Follow symbolic links of an inside path without leaving the root."""
        if self.live:
            return os.path.realpath(path)
        pending = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, name])
            try:
                target = os.readlink(self.root + candidate)
            except OSError:
                done.append(name)  # not a link, or missing: the read itself will say so
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", candidate)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p] + pending
        return "/" + "/".join(done)

    def distinct(self, dirs: tuple[str, ...]) -> tuple[str, ...]:
        """Drop directories that are the same place as an earlier one (merged /usr: /lib -> /usr/lib),
        so a file reached through both is read, and reported, once."""
        seen: set[str] = set()
        kept: list[str] = []
        for directory in dirs:
            resolved = self.resolve(directory)
            if resolved not in seen:
                seen.add(resolved)
                kept.append(directory)
        return tuple(kept)

    def host(self, path: str) -> str:
        """The host path of an inside path (links resolved inside the root)."""
        if self.live:
            return path
        return self.root + self.resolve(path)

    def host_nofollow(self, path: str) -> str:
        """Host path whose last component is not followed (for lstat/readlink)."""
        if self.live:
            return path
        parent, name = os.path.split(path.rstrip("/") or "/")
        return self.host(parent).rstrip("/") + "/" + name if name else self.root

    def read_bytes(self, path: str) -> bytes:
        with open(self.host(path), "rb") as handle:
            return handle.read()

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.host(path)))

    def stat(self, path: str) -> os.stat_result:
        return os.stat(self.host(path))

    def lstat(self, path: str) -> os.stat_result:
        return os.lstat(self.host_nofollow(path))

    def readlink(self, path: str) -> str:
        return os.readlink(self.host_nofollow(path))

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def is_file(self, path: str) -> bool:
        try:
            return stat.S_ISREG(self.stat(path).st_mode)
        except OSError:
            return False

    def modified(self, path: str) -> str | None:
        try:
            return iso_utc_from_ns(self.lstat(path).st_mtime_ns)
        except OSError:
            return None

    def sha256(self, path: str) -> str | None:
        """sha256 of a regular file (cached: many entries run the same binary)."""
        key = self.resolve(path)
        if key not in self._hashes:
            self._hashes[key] = self._hash_file(key)
        return self._hashes[key]

    def _hash_file(self, path: str) -> str | None:
        digest = hashlib.sha256()
        try:
            with open(self.host(path), "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None  # never read a FIFO or device (SPEC §5, fileinfo)
                while chunk := handle.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
        except OSError:
            return None
        return digest.hexdigest()

    def find_command(self, name: str, search: tuple[str, ...] = COMMAND_SEARCH_PATH) -> str | None:
        """Inside path of an executable: absolute as given, else looked up in ``search``."""
        if not name:
            return None
        if name.startswith("/"):
            return name if self.is_file(name) else None
        if "/" in name:
            return None  # relative to an unknown working directory
        for directory in search:
            candidate = f"{directory}/{name}"
            if self.is_file(candidate):
                return candidate
        return None


@dataclass
class Reader:
    """Reads for one mechanism, remembering what existed and what failed."""

    fs: FsRoot
    seen: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (inside path, reason)

    def _failed(self, path: str, error: OSError) -> None:
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            return  # absent is not a problem; the caller's summary says "absent"
        self.problems.append((path, reason_for(error, path)))

    def read(self, path: str) -> bytes | None:
        try:
            data = self.fs.read_bytes(path)
        except OSError as error:
            self._failed(path, error)
            return None
        self.seen.append(path)
        return data

    def list_dir(self, path: str) -> list[str] | None:
        try:
            names = self.fs.list_dir(path)
        except OSError as error:
            self._failed(path, error)
            return None
        self.seen.append(path)
        return names

    def files_in(self, directory: str) -> list[str]:
        """Inside paths of the non-directory entries of ``directory`` (sorted)."""
        names = self.list_dir(directory)
        if names is None:
            return []
        base = directory.rstrip("/")
        return [f"{base}/{n}" for n in names if not self.fs.is_dir(f"{base}/{n}")]


def lines_of(data: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, line) pairs, line endings stripped."""
    return [(number, line.rstrip(b"\r")) for number, line in enumerate(data.split(b"\n"), start=1)]

"""Walking to a place from ``/`` without following a symbolic link, and saying what stands there.

A remediation runs as root and restores files and links to places an attacker
may reach: a directory on the way swapped for a link (``/tmp/x`` ->
``/etc/cron.d``) must not redirect it. ``open_directory`` opens a path one
component at a time with ``O_NOFOLLOW``, so such a swap is found (``Blocked``)
rather than followed, and makes the missing directories with the recorded
mode and owner when asked. ``in_the_way`` and ``describe_existing`` say what is
at a place now, in the words an undo's refusal (``conflict``) uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liveresponse.agent.platform.linux import file_metadata
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.protocol.errors import Conflict
from liveresponse.protocol.names import escape_bytes

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Blocked(Exception):
    """Something other than a directory stands where a directory on the way was (``description`` says what)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def describe_existing(path: bytes, info: os.stat_result) -> str:
    """What is at a place now, for a refusal: type (a link's target), size of a file, modified."""
    modified = iso_utc_from_ns(info.st_mtime_ns)
    shown = escape_bytes(path)
    if stat.S_ISLNK(info.st_mode):
        try:
            return f"{shown} exists (link to {escape_bytes(os.readlink(path))}, modified {modified})"
        except OSError:
            return f"{shown} exists (link, modified {modified})"
    if stat.S_ISREG(info.st_mode):
        return f"{shown} exists (file, {info.st_size} bytes, modified {modified})"
    return f"{shown} exists ({file_metadata.detailed_type(info.st_mode)}, modified {modified})"


def conflict(places: list[str]) -> Conflict:
    """The refusal of an undo that would overwrite what is at its places now (``describe_existing``)."""
    them = "it" if len(places) == 1 else "them"
    return Conflict(f"{'; '.join(places)}: undo never overwrites, so nothing was changed; move {them} away first")


def open_directory(path: bytes, make: Callable[[bytes], dict[str, Any]] | None = None) -> tuple[int, list[bytes]]:
    """``path`` opened from / one component at a time, never following a symbolic link; the fd and what was made.

    A link or a non-directory on the way raises :class:`Blocked`. A missing component raises
    FileNotFoundError, unless ``make`` gives the mode and owner (``mode``, ``uid``, ``gid``) to make it
    with; the directories made are returned top down, and removed again if the walk fails.
    """
    fd = os.open(b"/", DIR_FLAGS)
    current = b"/"
    made: list[bytes] = []
    try:
        for name in (part for part in path.split(b"/") if part):
            current = os.path.join(current, name)
            try:
                child = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if make is None:
                    raise
                child = _make_directory(fd, name, make(current))
                made.append(current)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                raise Blocked(f"{describe_existing(current, info)} where a directory was") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        remove_made(made)
        raise
    return fd, made


def _make_directory(parent_fd: int, name: bytes, recorded: dict[str, Any]) -> int:
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    # chown first: it would clear a set-group-id bit set before it.
    os.fchown(fd, int(recorded["uid"]), int(recorded["gid"]))
    os.fchmod(fd, int(recorded["mode"]))
    return fd


def remove_made(made: list[bytes]) -> None:
    """Remove directories ``open_directory`` made (empty ones only), deepest first."""
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def in_the_way(path: bytes) -> list[str]:
    """What stands at ``path`` or in place of a directory on the way to it (nothing: the way is free)."""
    directory, name = os.path.split(path)
    try:
        dir_fd, _ = open_directory(directory)
    except Blocked as blocked:
        return [blocked.description]
    except (FileNotFoundError, NotADirectoryError):
        return []  # the rest of the way is made
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return []
    finally:
        os.close(dir_fd)
    return [describe_existing(path, info)]


def fsync_dir(directory: Path | bytes) -> None:
    """Make a rename, link or unlink in ``directory`` durable."""
    fd = os.open(directory, DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Turning an ``os.stat_result`` into the fields dir, fileinfo and findfile report (SPEC §5)."""

from __future__ import annotations

import grp
import pwd
import stat
from functools import lru_cache
from typing import Any

from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns

# fileinfo distinguishes every kind of inode; dir and findfile use the coarse
# file/dir/link/other of SPEC §5.
_DETAILED_TYPES: tuple[tuple[int, str], ...] = (
    (stat.S_IFREG, "file"),
    (stat.S_IFDIR, "dir"),
    (stat.S_IFLNK, "link"),
    (stat.S_IFIFO, "fifo"),
    (stat.S_IFSOCK, "socket"),
    (stat.S_IFCHR, "char_device"),
    (stat.S_IFBLK, "block_device"),
)
_LISTING_TYPES = frozenset({"file", "dir", "link"})


def detailed_type(mode: int) -> str:
    kind = stat.S_IFMT(mode)
    for flag, name in _DETAILED_TYPES:
        if kind == flag:
            return name
    return "unknown"


def listing_type(mode: int) -> str:
    name = detailed_type(mode)
    return name if name in _LISTING_TYPES else "other"


@lru_cache(maxsize=4096)
def owner_name(uid: int) -> str:
    """User name of ``uid``, or the number as text when no account has it (deleted users)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def mode_fields(mode: int) -> dict[str, str]:
    """``mode`` as ``ls`` shows it and ``mode_octal`` with the setuid/setgid/sticky digit."""
    return {"mode": stat.filemode(mode), "mode_octal": f"{stat.S_IMODE(mode):04o}"}


def ownership_fields(st: Any) -> dict[str, Any]:
    return {"owner": owner_name(st.st_uid), "group": group_name(st.st_gid), "uid": st.st_uid, "gid": st.st_gid}


def modified(st: Any) -> str | None:
    return iso_utc_from_ns(st.st_mtime_ns)

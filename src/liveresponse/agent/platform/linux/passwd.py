"""The password database of the collector root (``<root>/etc/passwd``).

Read from the file rather than through ``pwd`` so an offline root describes its
own users; home directories are inside paths, read under the root.
"""

from __future__ import annotations

from dataclasses import dataclass

from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader

PASSWD = "/etc/passwd"
# Every user: system-wide entries (XDG autostart, /etc/profile...) apply to whoever logs in.
ALL_USERS = "(all users)"
_NO_HOME = {"", "/nonexistent", "/dev/null"}


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: str
    shell: str


def read_users(fs: FsRoot, reader: Reader | None = None) -> list[User]:
    reader = reader or Reader(fs)
    data = reader.read(PASSWD)
    if data is None:
        return []
    users: list[User] = []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        fields = raw.split(":")
        if len(fields) < 7 or raw.startswith(("#", "+", "-")):
            continue  # NIS compat lines name no local user
        try:
            uid = int(fields[2])
        except ValueError:
            continue
        users.append(User(fields[0], uid, fields[5], fields[6]))
    return users


def users_with_homes(users: list[User]) -> list[User]:
    """One user per distinct home directory (the first in the database wins).

    Several service accounts share homes such as ``/bin``; reading each home once
    keeps the output free of duplicates.
    """
    seen: set[str] = set()
    unique: list[User] = []
    for user in users:
        home = user.home.rstrip("/") or "/"
        if home in _NO_HOME or home in seen:
            continue
        seen.add(home)
        unique.append(user)
    return unique


def name_for_uid(users: list[User], uid: int) -> str:
    for user in users:
        if user.uid == uid:
            return user.name
    return str(uid)


def home_path(user: User, relative: str) -> str:
    return f"{user.home.rstrip('/')}/{relative}"

"""Enabling and alias links of a unit, for a remediation: found, recorded exactly, removed, re-created (DR-14).

``unit_links`` finds the symlinks that enable (``*.wants``, ``*.requires``,
``*.upholds``) or alias a systemd unit in its scope's directories
(``scope_link_dirs``). Each is recorded before it goes (``link_item``: path, raw
target text, owner, and its real directory) and removed only if it is still that
link; undo re-creates it with the same target and owner. Both walk to the link's
directory from ``/`` without following a link (nofollow_paths.py), so a directory
swapped for a link meanwhile is a conflict, never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from liveresponse.agent.platform.linux.nofollow_paths import (
    Blocked,
    conflict,
    describe_existing,
    in_the_way,
    open_directory,
    remove_made,
)
from liveresponse.agent.platform.linux.passwd import ALL_USERS, read_users, users_with_homes
from liveresponse.agent.platform.linux.remediate_common import Record, changed, inside_of, text_of
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.units import (
    ENABLING_DIR_SUFFIXES,
    UNIT_SUFFIXES,
    UnitScope,
    enabling_links,
    template_of,
    user_scopes,
)
from liveresponse.agent.quarantine import Vault, place_of
from liveresponse.protocol.errors import CommandFailed
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes


def scope_link_dirs(fs: FsRoot, reader: Reader, scope: UnitScope) -> tuple[str, ...]:
    """Where links enabling a unit of ``scope`` live."""
    if scope.kind == "user" and scope.user == ALL_USERS:
        # A global user unit is enabled for everybody in /etc/systemd/user, or per user in their home.
        homes = [s.dirs for s in user_scopes(reader, users_with_homes(read_users(fs, reader)))[1:]]
        return scope.dirs + tuple(d for dirs in homes for d in dirs)
    return scope.dirs


def unit_links(reader: Reader, dirs: Iterable[str], unit_name: str) -> list[str]:
    """Inside paths of the symlinks that enable or alias ``unit_name`` in ``dirs``.

    Enabling: in ``*.wants``/``*.requires``/``*.upholds``, named as the unit (or an instance of the
    template), or pointing at a file of that name. Alias: a unit-named link at the top of a unit
    directory that points at the unit (``systemctl enable`` makes these from ``Alias=``). The unit's
    own file, even when it is a link (``systemctl link``), is neither.
    """
    fs = reader.fs
    found: list[str] = []
    dirs = tuple(dirs)
    for link in enabling_links(reader, dirs):
        base = link.target.rsplit("/", 1)[-1] if link.target else None
        if unit_name in (link.name, template_of(link.name), base) and _is_link(fs, link.path):
            found.append(link.path)
    for directory in dirs:
        for name in reader.list_dir(directory) or []:
            path = f"{directory}/{name}"
            if name == unit_name or not name.endswith(UNIT_SUFFIXES) or not _is_link(fs, path):
                continue
            try:
                target = fs.resolve(path)
            except OSError:
                continue
            if target != "/dev/null" and target.rsplit("/", 1)[-1] == unit_name:
                found.append(path)
    return list(dict.fromkeys(found))


def _is_link(fs: FsRoot, path: str) -> bool:
    try:
        return stat.S_ISLNK(fs.lstat(path).st_mode)
    except OSError:
        return False


def link_role(item: dict[str, Any]) -> str:
    """ "enabling link" in a .wants/.requires/.upholds directory, else "alias link"."""
    folder = os.path.dirname(inside_of(item["path"]))
    return "enabling link" if folder.endswith(ENABLING_DIR_SUFFIXES) else "alias link"


def link_item(fs: FsRoot, path: str) -> dict[str, Any]:
    """The record of the link at inside ``path``: raw target, owner, and where it really is."""
    host = fs.host_nofollow(path)
    info = os.lstat(host)
    target = os.readlink(os.fsencode(host))
    real = os.path.join(os.path.realpath(os.path.dirname(os.fsencode(host))), os.path.basename(os.fsencode(host)))
    return {"kind": "link", "path": text_of(path), "target": escape_bytes(target), "uid": info.st_uid,
            "gid": info.st_gid, "real_path": escape_bytes(real)}  # fmt: skip


def _link_at(item: dict[str, Any]) -> tuple[int, bytes] | None:
    """The directory (opened without following links) and name of the item's link; None if unreachable."""
    directory, name = os.path.split(place_of(item))
    try:
        dir_fd, _ = open_directory(directory)
    except (Blocked, OSError):
        return None
    return dir_fd, name


def _same_link(dir_fd: int, name: bytes, item: dict[str, Any]) -> bool:
    try:
        return os.readlink(name, dir_fd=dir_fd) == unescape_to_bytes(item["target"])
    except OSError:
        return False


def remove_link(item: dict[str, Any]) -> bool:
    """Remove the recorded link if it is still that link (False when something else is there now)."""
    found = _link_at(item)
    if found is None:
        return False
    dir_fd, name = found
    try:
        if not _same_link(dir_fd, name, item):
            return False
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    finally:
        os.close(dir_fd)
    return True


def link_conflicts(item: dict[str, Any]) -> list[str]:
    """What stands in the way of re-creating the link (none: the place is free, or the same link is there)."""
    found = _link_at(item)
    if found is not None:
        dir_fd, name = found
        try:
            if _same_link(dir_fd, name, item):
                return []
        finally:
            os.close(dir_fd)
    return in_the_way(place_of(item))


def recreate_link(item: dict[str, Any]) -> bool:
    """Re-create the link exactly (target text, owner; missing directories too); False when it was there."""
    directory, name = os.path.split(place_of(item))
    owner = {"mode": 0o755, "uid": item["uid"], "gid": item["gid"]}
    try:
        dir_fd, made = open_directory(directory, lambda _missing: owner)
    except Blocked as blocked:
        raise conflict([blocked.description]) from None
    except OSError as error:
        raise CommandFailed(f"cannot re-create {item['path']}: {error.strerror}") from None
    try:
        if _same_link(dir_fd, name, item):
            return False
        os.symlink(unescape_to_bytes(item["target"]), name, dir_fd=dir_fd)
        os.chown(name, item["uid"], item["gid"], dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        appeared = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        remove_made(made)
        raise conflict([describe_existing(place_of(item), appeared)]) from None
    except OSError as error:
        remove_made(made)
        raise CommandFailed(f"cannot re-create {item['path']}: {error.strerror}") from None
    finally:
        os.close(dir_fd)
    return True


def remove_links(fs: FsRoot, vault: Vault, record: Record, paths: list[str], what: str | None = None) -> int:
    """Remove the links at inside ``paths``, each recorded (and the record saved) first; how many went.

    ``what`` names them in sentences (default: "enabling link" or "alias link", by their directory).
    """
    removed = 0
    for path in paths:
        try:
            item = link_item(fs, path)
        except OSError:
            record["left"].append(f"{what or 'link'} {text_of(path)} was gone when it was to be removed")
            continue
        role = what or link_role(item)
        record["items"].append(item)
        vault.save(record)
        if remove_link(item):
            removed += 1
            changed(record, f"removed {role} {item['path']} -> {item['target']}")
        else:
            record["items"].remove(item)
            record["left"].append(f"{role} {item['path']} changed while it was removed: left as it is")
            vault.save(record)
    return removed


def pending_links(record: Record) -> list[dict[str, Any]]:
    """The removed links of a record not re-created yet."""
    return [item for item in record.get("items") or [] if item.get("kind") == "link" and not item.get("restored")]


def recreate_links(
    vault: Vault, record: Record, items: list[dict[str, Any]], actions: list[str], what: str | None = None
) -> None:
    """Re-create each link (conflicts checked by the caller), marking each restored as it goes."""
    for item in items:
        created = recreate_link(item)
        item["restored"] = True
        done = "re-created" if created else "kept the existing"
        actions.append(f"{done} {what or link_role(item)} {item['path']} -> {item['target']}")
        vault.save(record)

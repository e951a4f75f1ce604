"""The quarantine vault: remediated files kept encrypted in the agent's state directory, for undo (SPEC §5, DR-14).

Layout inside the state directory (0700)::

    quarantine.key            32 random bytes, made on first use (0600)
    quarantine/               0700
      blobs/<hex>.qv          one quarantined file's content, encrypted (0600, never executable)
      records/<rem_id>.json   one remediation: what was done, by whom, and the items to undo it

The blob format, and the free-space check made before one is written, are in
quarantine_blob.py; the records in quarantine_records.py (``Vault`` is a
``RecordStore``). This module moves files in and out. The plaintext's sha256 is
kept in the item and checked again on restore. A sparse file is stored whole
(its holes as zeros), so its copy needs its full size free on the vault's file
system, and is refused when that is not there.

Crash safety. ``quarantine_file`` writes and fsyncs the blob, publishes it by
rename and fsyncs the blob directory; then, when given the caller's record, saves
the record with the new item (the caller sets its state, "remediating"); only then
does it unlink the original and fsync its directory. A crash:

* before the blob is published leaves a ``.tmp-*`` file in ``blobs/`` and the
  original in place: nothing was remediated; the first Vault made in the next
  agent process removes such files (only ``.tmp-*`` ones older than that process);
* after the record is saved but before the unlink leaves the original in place
  and a record in state "remediating": ``undo`` sees the same file still at the
  path (inode, size, times, mode, owner and sha256 all as recorded: a file made
  after the unlink often gets the freed inode back) and marks the record
  restored without writing anything;
* after the unlink leaves a record in state "remediating" whose blob holds the
  content: ``undo`` restores it like any other.

Links are never followed on the way. A file is quarantined from, and restored
to, its real directory (the path's links resolved when it is quarantined, kept
as ``real_path``), opened from ``/`` one component at a time without following a
symbolic link (nofollow_paths.py): a directory swapped for a link (``/tmp/x`` ->
``/etc/cron.d``) cannot redirect a restore made as root; it is a conflict.

``restore_file`` never overwrites: the new file is written to a temporary name
in the target directory, given its owner, mode, attributes and times, and
hard-linked into place (``link`` fails if anything appeared meanwhile). The blob
is removed only after the file is in place; a crash between the two leaves a
blob and a file in place that ``original_in_place`` recognises, never a loss.
``restore_conflicts`` says what stands in the way before anything is changed, so
an undo of several items checks them all first.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Any

from liveresponse.agent import quarantine_blob as blobs
from liveresponse.agent.platform.linux import file_metadata
from liveresponse.agent.platform.linux.listed_file import differences
from liveresponse.agent.platform.linux.nofollow_paths import (
    Blocked,
    conflict,
    describe_existing,
    fsync_dir,
    in_the_way,
    open_directory,
    remove_made,
)
from liveresponse.agent.platform.linux.process_table import ProcessGone, read_process
from liveresponse.agent.quarantine_records import RecordStore
from liveresponse.agent.state import ensure_private_dir, write_atomic
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
UNRECORDED_PARENT = {"mode": 0o755, "uid": 0, "gid": 0}  # made for a parent an item does not record (none: all are)

# One lock per state directory, whoever builds the Vault: two remediations never interleave.
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()
# State directories whose partial blobs this process has cleared (once, at its first Vault there).
_SWEPT: set[str] = set()


def _lock_for(directory: Path) -> threading.RLock:
    key = os.path.abspath(directory)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


def process_started_ns() -> int:
    """When this process started (from /proc/self/stat, against the boot clock: precise to a clock tick)."""
    boot_s = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    try:
        return int(read_process(os.getpid(), boot_s).start_time_s * 1_000_000_000)
    except ProcessGone:  # no /proc: nothing is older than now for sure, so nothing is removed
        return 0


def place_of(item: dict[str, Any]) -> bytes:
    """Where a quarantined file really was (records made before ``real_path`` only have ``path``)."""
    return unescape_to_bytes(item.get("real_path") or item["path"])


class Vault(RecordStore):
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "quarantine"
        self.blobs = self.dir / "blobs"
        self.records_dir = self.dir / "records"
        self.key_path = self.state_dir / "quarantine.key"
        self.lock = _lock_for(self.state_dir)
        self._key: bytes | None = None
        self._remove_partial_blobs_once()

    # -- set-up ---------------------------------------------------------------

    def _remove_partial_blobs_once(self) -> None:
        """At the first Vault of this state directory in this process: clear what a killed writer left."""
        key = os.path.abspath(self.state_dir)
        with self.lock:
            if key in _SWEPT:
                return
            _SWEPT.add(key)
            blobs.remove_partial_blobs(self.blobs, process_started_ns())

    def _ready(self) -> None:
        ensure_private_dir(self.state_dir)
        for directory in (self.dir, self.blobs, self.records_dir):
            ensure_private_dir(directory)

    def key(self) -> bytes:
        if self._key is None:
            self._ready()
            self._key = self._load_or_make_key()
        return self._key

    def _load_or_make_key(self) -> bytes:
        try:
            data = self.key_path.read_bytes()
        except FileNotFoundError:
            tmp = self.state_dir / f".quarantine.key.{secrets.token_hex(6)}"
            write_atomic(tmp, secrets.token_bytes(blobs.KEY_BYTES), 0o600)
            try:
                os.link(tmp, self.key_path)  # create-if-absent: another agent process may have won
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            data = self.key_path.read_bytes()
        if len(data) != blobs.KEY_BYTES:
            raise CommandFailed(
                f"the quarantine key {self.key_path} is damaged ({len(data)} bytes, not {blobs.KEY_BYTES})"
            )
        return data

    # -- files ----------------------------------------------------------------

    def quarantine_file(
        self,
        path: bytes,
        expect: dict[str, Any] | None = None,
        record: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move a regular file into the vault (see the module docstring for the order of steps).

        ``expect`` (the listing's facts: listed_file.differences) is checked first; any difference is
        refused, nothing done; so is a file whose copy would not leave the vault's file system its
        reserve (quarantine_blob.require_room). ``record``, when given, gets the item and
        is saved before the original is unlinked. ``details`` (the caller's own facts,
        such as the file's role) go into the item before it is saved.
        """
        self._ready()
        shown = escape_bytes(path)
        directory, name = os.path.split(path)
        real_directory = os.path.realpath(directory or b"/")
        try:
            dir_fd, _ = open_directory(real_directory)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such file: {shown}") from None
        except Blocked as blocked:
            raise CommandFailed(f"{shown} moved while being quarantined: {blocked.description}; nothing done") from None
        try:
            return self._quarantine_in(dir_fd, path, real_directory, name, expect or {}, record, details or {})
        finally:
            os.close(dir_fd)

    def _quarantine_in(
        self,
        dir_fd: int,
        path: bytes,
        real_directory: bytes,
        name: bytes,
        expect: dict[str, Any],
        record: dict[str, Any] | None,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        shown = escape_bytes(path)
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"no such file: {shown}") from None
        if not stat.S_ISREG(before.st_mode):
            kind = file_metadata.detailed_type(before.st_mode)
            raise CommandFailed(f"{shown} is a {kind}, not a regular file: only regular files are quarantined")
        changed = differences(expect, before)
        if changed:
            raise CommandFailed(f"{shown} changed since it was listed: {'; '.join(changed)}; nothing done")
        fd = _open_quietly(name, dir_fd)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(opened.st_mode):
                raise CommandFailed(f"{shown} was replaced while being quarantined; nothing done")
            xattrs = _read_xattrs(fd)
            blobs.require_room(self.blobs, opened.st_size, shown, opened.st_blocks * 512)
            blob_name = f"{secrets.token_hex(16)}{blobs.BLOB_SUFFIX}"
            try:
                sha256 = blobs.write_blob(self.key(), fd, self.blobs, blob_name, max_bytes=opened.st_size)
            except blobs.Oversized:
                raise CommandFailed(f"{shown} grew while being quarantined; nothing done") from None
            after = os.fstat(fd)
        finally:
            os.close(fd)
        blob = self.blobs / blob_name
        try:
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
                before.st_size,
                before.st_mtime_ns,
                before.st_ctime_ns,
            ):
                raise CommandFailed(f"{shown} changed while being quarantined; nothing done")
            changed = differences(expect, before, sha256)
            if changed:
                raise CommandFailed(f"{shown} changed since it was listed: {'; '.join(changed)}; nothing done")
        except BaseException:
            blob.unlink(missing_ok=True)
            raise
        item: dict[str, Any] = {
            "kind": "file",
            "path": shown,
            "real_path": escape_bytes(os.path.join(real_directory, name)),
            "size": before.st_size,
            "sha256": sha256,
            "mode": stat.S_IMODE(before.st_mode),
            "uid": before.st_uid,
            "gid": before.st_gid,
            "owner": file_metadata.owner_name(before.st_uid),
            "group": file_metadata.group_name(before.st_gid),
            "atime_ns": before.st_atime_ns,
            "mtime_ns": before.st_mtime_ns,
            "inode": before.st_ino,
            "dev": before.st_dev,
            "links": before.st_nlink,
            "xattrs": xattrs,
            "blob": blob_name,
            "parents": _parents(real_directory),
            **details,
        }
        saved_before = record is not None and self._record_path(record["id"]).exists()
        try:
            if record is not None:
                record.setdefault("items", []).append(item)
                self.save(record)
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
                raise CommandFailed(f"{shown} was replaced while being quarantined; nothing done")
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError as error:
                raise CommandFailed(f"cannot remove {shown}: {error.strerror}; nothing done") from None
        except BaseException:
            blob.unlink(missing_ok=True)
            if record is not None:
                record["items"].remove(item)
                if saved_before:
                    self.save(record)
                else:
                    self._record_path(record["id"]).unlink(missing_ok=True)
            raise
        os.fsync(dir_fd)
        return item

    def original_in_place(self, item: dict[str, Any]) -> bool:
        """The quarantined original never left (the agent died between saving the record and the unlink).

        The inode alone does not prove it: a file created after the unlink often gets the freed inode
        back. Size, mtime, mode, owner and content must all be the recorded ones too.
        """
        place = place_of(item)
        directory, name = os.path.split(place)
        try:
            dir_fd, _ = open_directory(directory)
        except (Blocked, OSError):
            return False
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or _identity(info) != _recorded_identity(item):
                return False
            fd = _open_quietly(name, dir_fd)  # no link, no FIFO swapped in meanwhile: O_NOFOLLOW | O_NONBLOCK
        except OSError:
            return False
        finally:
            os.close(dir_fd)
        try:
            if _identity(os.fstat(fd)) != _recorded_identity(item):
                return False
            digest = hashlib.sha256()
            while chunk := blobs.read_chunk(fd):
                digest.update(chunk)
        except OSError:
            return False
        finally:
            os.close(fd)
        return digest.hexdigest() == item.get("sha256")

    def restore_conflicts(self, item: dict[str, Any]) -> list[str]:
        """What stands in the way of putting ``item`` back (none: the way is free, or the original never left)."""
        return [] if self.original_in_place(item) else in_the_way(place_of(item))

    def restore_file(self, item: dict[str, Any]) -> dict[str, Any]:
        """Put a quarantined file back exactly, never over anything (see the module docstring)."""
        place = place_of(item)
        shown = item["path"]
        blocking = in_the_way(place)
        if blocking:
            raise conflict(blocking)
        directory, name = os.path.split(place)
        parents = {unescape_to_bytes(p["path"]): p for p in item.get("parents") or []}
        made: list[bytes] = []
        try:
            dir_fd, made = open_directory(directory, lambda missing: parents.get(missing) or UNRECORDED_PARENT)
            try:
                xattrs_failed = self._restore_in(dir_fd, place, name, item)
            finally:
                os.close(dir_fd)
        except Blocked as blocked:
            raise conflict([blocked.description]) from None
        except BaseException as error:
            remove_made(made)
            if isinstance(error, OSError):
                raise CommandFailed(f"cannot restore {shown}: {error.strerror or error}; nothing restored") from None
            raise
        (self.blobs / item["blob"]).unlink(missing_ok=True)
        fsync_dir(self.blobs)
        result: dict[str, Any] = {
            "path": shown,
            "sha256": item["sha256"],
            "size": item["size"],
            "created_parents": [escape_bytes(p) for p in made],
        }
        if xattrs_failed:
            result["xattrs_not_restored"] = xattrs_failed
        return result

    def _restore_in(self, dir_fd: int, place: bytes, name: bytes, item: dict[str, Any]) -> list[str]:
        tmp_name = b".lr-restore-" + secrets.token_hex(6).encode()
        fd = os.open(tmp_name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            digest = hashlib.sha256()
            size = 0
            with open(fd, "wb", closefd=False) as out:
                for chunk in blobs.read_blob(self.key(), self.blobs / item["blob"]):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
            if digest.hexdigest() != item["sha256"] or size != item["size"]:
                raise CommandFailed(
                    f"the quarantined copy of {item['path']} does not match its sha256 {item['sha256']}"
                    f" (got {digest.hexdigest()}, {size} bytes); nothing restored"
                )
            # chown first: it clears set-user-id bits and file capabilities, which come after.
            os.fchown(fd, int(item["uid"]), int(item["gid"]))
            os.fchmod(fd, int(item["mode"]))
            xattrs_failed = _write_xattrs(fd, item.get("xattrs") or {})
            # Times on the open file, before it has a name anyone could swap: link() changes neither.
            os.utime(fd, ns=(int(item["atime_ns"]), int(item["mtime_ns"])))
            os.fsync(fd)
            try:
                os.link(tmp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                appeared = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                raise conflict([describe_existing(place, appeared)]) from None
        finally:
            os.close(fd)
            os.unlink(tmp_name, dir_fd=dir_fd)
        os.fsync(dir_fd)
        return xattrs_failed

    def discard_blob(self, item: dict[str, Any]) -> None:
        """Forget a blob whose original turned out never to have left its place."""
        (self.blobs / item["blob"]).unlink(missing_ok=True)


def _open_quietly(name: bytes, dir_fd: int) -> int:
    """Open for reading without touching the access time when allowed (the owner, or root)."""
    try:
        return os.open(name, _READ_FLAGS | os.O_NOATIME, dir_fd=dir_fd)
    except PermissionError:
        return os.open(name, _READ_FLAGS, dir_fd=dir_fd)


def _read_xattrs(fd: int) -> dict[str, str]:
    """Extended attributes (file capabilities, user.*, ACLs) as base64, to restore with the file."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    values = {}
    for attribute in names:
        with contextlib.suppress(OSError):
            values[attribute] = base64.b64encode(os.getxattr(fd, attribute)).decode("ascii")
    return values


def _write_xattrs(fd: int, values: dict[str, str]) -> list[str]:
    failed = []
    for attribute, encoded in values.items():
        try:
            os.setxattr(fd, attribute, base64.b64decode(encoded))
        except OSError:
            failed.append(attribute)
    return failed


def _parents(directory: bytes) -> list[dict[str, Any]]:
    """``directory`` and every directory above it, from / down, with its mode and owner."""
    ancestors = [directory]
    while ancestors[-1] != b"/":
        ancestors.append(os.path.dirname(ancestors[-1]))
    rows = []
    for place in reversed(ancestors):
        info = os.lstat(place)
        rows.append({"path": escape_bytes(place), "mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid,
                     "gid": info.st_gid})  # fmt: skip
    return rows


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode), info.st_uid,
            info.st_gid)  # fmt: skip


def _recorded_identity(item: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(item.get(key) for key in ("dev", "inode", "size", "mtime_ns", "mode", "uid", "gid"))

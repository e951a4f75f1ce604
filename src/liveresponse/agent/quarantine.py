"""The quarantine vault: remediated files kept encrypted in the agent's state directory, for undo (SPEC §5).

Layout inside the state directory (0700)::

    quarantine.key            32 random bytes, made on first use (0600)
    quarantine/               0700
      blobs/<hex>.qv          one quarantined file's content, encrypted (0600, never executable)
      records/<rem_id>.json   one remediation: what was done, by whom, and the items to undo it

A blob is ``MAGIC | salt (16 bytes)`` followed by chunks ``length (4 bytes, big
endian) | AES-256-GCM ciphertext`` of at most 1 MiB of plaintext each. The blob's
key is derived from the vault key and the salt (HKDF-SHA256), so nonces never
repeat across blobs; a chunk's nonce is its counter plus a final-chunk flag and
the header is authenticated with every chunk, so a reordered, truncated or
spliced blob fails to decrypt. The plaintext's sha256 is kept in the item and
checked again on restore. Content is streamed both ways: no file is held whole
in memory (SPEC §7).

Crash safety. ``quarantine_file`` writes and fsyncs the blob, publishes it by
rename and fsyncs the blob directory; then, when given the caller's record, saves
the record with the new item (the caller sets its state, "remediating"); only then
does it unlink the original and fsync its directory. A crash:

* before the blob is published leaves a ``.tmp-*`` file in ``blobs/`` and the
  original in place: nothing was remediated;
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
symbolic link: a directory swapped for a link (``/tmp/x`` -> ``/etc/cron.d``)
cannot redirect a restore made as root; it is a conflict.

``restore_file`` never overwrites: the new file is written to a temporary name
in the target directory, given its owner, mode, attributes and times, and
hard-linked into place (``link`` fails if anything appeared meanwhile). The blob
is removed only after the file is in place; a crash between the two leaves a
blob and a file in place that ``original_in_place`` recognises, never a loss.
``restore_conflicts`` says what stands in the way before anything is changed, so
an undo of several items checks them all first.

Records are JSON (one file each, written atomically). Items of kinds other than
"file" (links, cron lines: services and scheduled tasks) belong to their
modules; the vault stores them as given.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import file_metadata
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.state import ensure_private_dir, write_atomic
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from liveresponse.protocol.names import escape_bytes, resolve_lexically, unescape_to_bytes

CHUNK_BYTES = 1024 * 1024
KEY_BYTES = 32
MAGIC = b"LRQV\x00\x00\x00\x01"
_SALT_BYTES = 16
_HEADER_BYTES = len(MAGIC) + _SALT_BYTES
_TAG_BYTES = 16
_LENGTH = struct.Struct(">I")
_HKDF_INFO = b"liveresponse quarantine blob v1"
_RECORD_ID = re.compile(r"^rem_[0-9a-f]{12}$")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
UNRECORDED_PARENT = {"mode": 0o755, "uid": 0, "gid": 0}  # made for a parent an item does not record (none: all are)

# One lock per state directory, whoever builds the Vault: two remediations never interleave.
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(directory: Path) -> threading.RLock:
    key = os.path.abspath(directory)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


def is_record_id(text: str) -> bool:
    return bool(_RECORD_ID.match(text))


def now_iso_seconds() -> str:
    """The time form of records (whole seconds, UTC): remediated_at and restored_at."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def differences(expect: dict[str, Any], info: os.stat_result, sha256: str | None = None) -> list[str]:
    """How a file differs from what a listing said of it (only the facts the listing gave)."""
    found = []
    if expect.get("inode") is not None and int(expect["inode"]) != info.st_ino:
        found.append(f"inode was {expect['inode']}, now {info.st_ino} (replaced)")
    if expect.get("dev") is not None and int(expect["dev"]) != info.st_dev:
        found.append(f"device was {expect['dev']}, now {info.st_dev}")
    if expect.get("size") is not None and int(expect["size"]) != info.st_size:
        found.append(f"size was {expect['size']} bytes, now {info.st_size}")
    if expect.get("ctime_ns") is not None and int(expect["ctime_ns"]) != info.st_ctime_ns:
        was, now = iso_utc_from_ns(int(expect["ctime_ns"])), iso_utc_from_ns(info.st_ctime_ns)
        found.append(f"status change time was {was}, now {now} (rewritten or replaced)")
    if sha256 is not None and expect.get("sha256") and expect["sha256"] != sha256:
        found.append(f"sha256 was {expect['sha256']}, now {sha256}")
    return found


class Blocked(Exception):
    """Something other than a directory stands where a directory on the way was (``description`` says what)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def open_directory(path: bytes, make: Callable[[bytes], dict[str, Any]] | None = None) -> tuple[int, list[bytes]]:
    """``path`` opened from / one component at a time, never following a symbolic link; the fd and what was made.

    A link or a non-directory on the way raises :class:`Blocked`. A missing component raises
    FileNotFoundError, unless ``make`` gives the mode and owner (``mode``, ``uid``, ``gid``) to make it
    with; the directories made are returned top down, and removed again if the walk fails.
    """
    fd = os.open(b"/", _DIR_FLAGS)
    current = b"/"
    made: list[bytes] = []
    try:
        for name in (part for part in path.split(b"/") if part):
            current = os.path.join(current, name)
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
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
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
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


def place_of(item: dict[str, Any]) -> bytes:
    """Where a quarantined file really was (records made before ``real_path`` only have ``path``)."""
    return unescape_to_bytes(item.get("real_path") or item["path"])


class Vault:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "quarantine"
        self.blobs = self.dir / "blobs"
        self.records_dir = self.dir / "records"
        self.key_path = self.state_dir / "quarantine.key"
        self.lock = _lock_for(self.state_dir)
        self._key: bytes | None = None

    # -- set-up ---------------------------------------------------------------

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
            write_atomic(tmp, secrets.token_bytes(KEY_BYTES), 0o600)
            try:
                os.link(tmp, self.key_path)  # create-if-absent: another agent process may have won
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            data = self.key_path.read_bytes()
        if len(data) != KEY_BYTES:
            raise CommandFailed(f"the quarantine key {self.key_path} is damaged ({len(data)} bytes, not {KEY_BYTES})")
        return data

    def _blob_key(self, salt: bytes) -> AESGCM:
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_HKDF_INFO).derive(self.key())
        return AESGCM(derived)

    # -- files ----------------------------------------------------------------

    def quarantine_file(
        self,
        path: bytes,
        expect: dict[str, Any] | None = None,
        record: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move a regular file into the vault (see the module docstring for the order of steps).

        ``expect`` (a listing's sha256/inode/size, optionally dev and ctime_ns) is checked first; any
        difference is refused, nothing done. ``record``, when given, gets the item and
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
            blob_name = f"{secrets.token_hex(16)}.qv"
            sha256 = self._write_blob(fd, blob_name)
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

    def _write_blob(self, source_fd: int, blob_name: str) -> str:
        """Encrypt the open file into blobs/<name> (published by rename after fsync); its sha256."""
        salt = secrets.token_bytes(_SALT_BYTES)
        header = MAGIC + salt
        cipher = self._blob_key(salt)
        digest = hashlib.sha256()
        tmp = self.blobs / f".tmp-{blob_name}"
        out_fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600)
        try:
            with open(out_fd, "wb", closefd=True) as out:
                out.write(header)
                counter = 0
                chunk = _read_chunk(source_fd)
                while True:
                    following = _read_chunk(source_fd) if chunk else b""
                    last = not following
                    digest.update(chunk)
                    sealed = cipher.encrypt(_nonce(counter, last), chunk, header)
                    out.write(_LENGTH.pack(len(sealed)))
                    out.write(sealed)
                    if last:
                        break
                    chunk, counter = following, counter + 1
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, self.blobs / blob_name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.blobs)
        return digest.hexdigest()

    def _decrypt(self, blob_name: str) -> Iterator[bytes]:
        """The plaintext chunks of a blob; CommandFailed if it does not authenticate."""
        damaged = CommandFailed(f"the quarantined copy {blob_name} is damaged; nothing restored")
        try:
            source = open(self.blobs / blob_name, "rb")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:
            raise CommandFailed(f"the quarantined copy {blob_name} is not in the vault; nothing restored") from None
        try:
            header = source.read(_HEADER_BYTES)
            if len(header) != _HEADER_BYTES or not header.startswith(MAGIC):
                raise damaged
            cipher = self._blob_key(header[len(MAGIC) :])
            counter = 0
            length = source.read(_LENGTH.size)
            while True:
                if len(length) != _LENGTH.size:
                    raise damaged
                (size,) = _LENGTH.unpack(length)
                if size < _TAG_BYTES or size > CHUNK_BYTES + _TAG_BYTES:
                    raise damaged
                sealed = source.read(size)
                length = source.read(_LENGTH.size)
                last = not length
                try:
                    yield cipher.decrypt(_nonce(counter, last), sealed, header)
                except InvalidTag:
                    raise damaged from None
                if last:
                    return
                counter += 1
        finally:
            source.close()

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
            while chunk := _read_chunk(fd):
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
        _fsync_dir(self.blobs)
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
                for chunk in self._decrypt(item["blob"]):
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

    # -- records --------------------------------------------------------------

    def new_record(self, type: str, entity: str, ctx: CommandContext) -> dict[str, Any]:
        return {
            "id": "rem_" + secrets.token_hex(6),
            "type": type,
            "entity": entity,
            "state": "remediated",
            "actions": [],
            "left": [],
            "path": None,
            "sha256": None,
            "remediated_by": ctx.requested_by,
            "remediated_at": now_iso_seconds(),
            "session_id": ctx.session_id,
            "command_id": ctx.command_id,
            "restored_by": None,
            "restored_at": None,
            "items": [],
            "_created_ns": time.time_ns(),  # orders records made within one second
        }

    def _record_path(self, record_id: str) -> Path:
        if not is_record_id(record_id):
            raise NotFound(f"{record_id!r} is not a remediation id (rem_ and 12 hex digits)")
        return self.records_dir / f"{record_id}.json"

    def save(self, record: dict[str, Any]) -> None:
        self._ready()
        write_atomic(self._record_path(record["id"]), json.dumps(record, indent=1).encode())
        _fsync_dir(self.records_dir)

    def drop_record(self, record: dict[str, Any]) -> None:
        """Forget a record whose remediation changed nothing."""
        self._record_path(record["id"]).unlink(missing_ok=True)
        if self.records_dir.exists():
            _fsync_dir(self.records_dir)

    def get(self, record_id: str) -> dict[str, Any] | None:
        if not is_record_id(record_id):
            return None
        try:
            loaded: dict[str, Any] = json.loads(self._record_path(record_id).read_text())
        except FileNotFoundError:
            return None
        return loaded

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        try:
            names = sorted(os.listdir(self.records_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                record = self.get(name[: -len(".json")])
                if record is not None:
                    found.append(record)
        found.sort(key=lambda r: (r.get("remediated_at") or "", r.get("_created_ns") or 0))
        return found

    def find_for_undo(self, type: str, ident: str) -> dict[str, Any]:
        """The record to undo: by id, else the newest not yet restored one of this entity."""
        by_id = self.get(ident) if is_record_id(ident) else None
        if by_id is not None:
            if by_id["type"] != type:
                raise CommandFailed(
                    f"{ident} is a {by_id['type']} remediation of {by_id['entity']}: undo {by_id['type']} {ident}"
                )
            if by_id["state"] == "restored":
                raise CommandFailed(_already_restored(by_id))
            return by_id
        wanted = _entity_key(type, ident)
        matching = [r for r in self.records() if r["type"] == type and _entity_key(type, r["entity"]) == wanted]
        if not matching:
            raise NotFound(f"no {type} remediation of {ident} on this device ('remediate list' shows them)")
        open_ones = [r for r in matching if r["state"] != "restored"]
        if not open_ones:
            latest = max(matching, key=lambda r: r.get("restored_at") or "")
            raise CommandFailed(_already_restored(latest))
        return open_ones[-1]


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the analyst sees it: without the vault's internals (items, ordering)."""
    return {k: v for k, v in record.items() if k != "items" and not k.startswith("_")}


def _already_restored(record: dict[str, Any]) -> str:
    return f"nothing to do: {record['id']} was already restored at {record['restored_at']} by {record['restored_by']}"


def _entity_key(type: str, entity: str) -> str:
    if type in ("file", "startupfolder") and entity.startswith("/"):
        return resolve_lexically("/", entity)
    if type == "service":
        return entity.removesuffix(".service")  # systemd's own rule: "ssh" names ssh.service
    return entity


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _read_chunk(fd: int) -> bytes:
    """Up to CHUNK_BYTES (short reads of a regular file only happen at its end, but be safe)."""
    parts = []
    wanted = CHUNK_BYTES
    while wanted:
        part = os.read(fd, wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


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


def _fsync_dir(directory: Path | bytes) -> None:
    fd = os.open(directory, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

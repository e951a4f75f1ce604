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

``restore_file`` never overwrites: the new file is written to a temporary name
in the target directory and hard-linked into place (``link`` fails if anything
appeared meanwhile). The blob is removed only after the file is in place; a
crash between the two leaves a blob that a repeated undo reports as a conflict
(the file is back), never a loss.

Records are JSON (one file each, written atomically). Items of kinds other than
"file" (links, cron lines: services and scheduled tasks) belong to their
modules; the vault stores them as given.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import struct
import threading
import time
from collections.abc import Iterator
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
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_existing(path: bytes, info: os.stat_result) -> str:
    """What is at a place now, for a refusal: type, size, modified."""
    kind = file_metadata.detailed_type(info.st_mode)
    return f"{escape_bytes(path)} exists ({kind}, {info.st_size} bytes, modified {iso_utc_from_ns(info.st_mtime_ns)})"


def conflict_at(path: bytes, info: os.stat_result, where: str = "") -> Conflict:
    """The refusal of an undo that would overwrite what is at a place now."""
    return Conflict(f"{describe_existing(path, info)}{where}: undo never overwrites; move it away first")


def differences(expect: dict[str, Any], info: os.stat_result, sha256: str | None = None) -> list[str]:
    """How a file differs from what a listing said of it (only the facts the listing gave)."""
    found = []
    if expect.get("inode") is not None and int(expect["inode"]) != info.st_ino:
        found.append(f"inode was {expect['inode']}, now {info.st_ino} (replaced)")
    if expect.get("dev") is not None and int(expect["dev"]) != info.st_dev:
        found.append(f"device was {expect['dev']}, now {info.st_dev}")
    if expect.get("size") is not None and int(expect["size"]) != info.st_size:
        found.append(f"size was {expect['size']} bytes, now {info.st_size}")
    if sha256 is not None and expect.get("sha256") and expect["sha256"] != sha256:
        found.append(f"sha256 was {expect['sha256']}, now {sha256}")
    return found


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
        self, path: bytes, expect: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move a regular file into the vault (see the module docstring for the order of steps).

        ``expect`` (a listing's sha256/inode/size, optionally dev) is checked first; any
        difference is refused, nothing done. ``record``, when given, gets the item and
        is saved before the original is unlinked.
        """
        self._ready()
        shown = escape_bytes(path)
        directory, name = os.path.split(path)
        try:
            dir_fd = os.open(directory or b"/", _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such file: {shown}") from None
        try:
            return self._quarantine_in(dir_fd, path, name, expect or {}, record)
        finally:
            os.close(dir_fd)

    def _quarantine_in(
        self, dir_fd: int, path: bytes, name: bytes, expect: dict[str, Any], record: dict[str, Any] | None
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
            "parents": _parents(path),
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

    def restore_file(self, item: dict[str, Any]) -> dict[str, Any]:
        """Put a quarantined file back exactly, never over anything (see the module docstring)."""
        path = unescape_to_bytes(item["path"])
        shown = item["path"]
        existing = _lstat(path)
        if existing is not None:
            raise conflict_at(path, existing)
        created = self._make_parents(item)
        directory, name = os.path.split(path)
        try:
            dir_fd = os.open(directory or b"/", _DIR_FLAGS)
            try:
                xattrs_failed = self._restore_in(dir_fd, path, name, item)
            finally:
                os.close(dir_fd)
        except BaseException:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(made)
            raise
        (self.blobs / item["blob"]).unlink(missing_ok=True)
        _fsync_dir(self.blobs)
        result: dict[str, Any] = {
            "path": shown,
            "sha256": item["sha256"],
            "size": item["size"],
            "created_parents": [escape_bytes(p) for p in created],
        }
        if xattrs_failed:
            result["xattrs_not_restored"] = xattrs_failed
        return result

    def _restore_in(self, dir_fd: int, path: bytes, name: bytes, item: dict[str, Any]) -> list[str]:
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
            os.fsync(fd)
            try:
                os.link(tmp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                appeared = _lstat(path)
                if appeared is None:
                    raise Conflict(f"something appeared at {item['path']} meanwhile; nothing restored") from None
                raise conflict_at(path, appeared) from None
            os.utime(name, ns=(int(item["atime_ns"]), int(item["mtime_ns"])), dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(fd)
            os.unlink(tmp_name, dir_fd=dir_fd)
        os.fsync(dir_fd)
        return xattrs_failed

    def _make_parents(self, item: dict[str, Any]) -> list[bytes]:
        """Re-create missing ancestors with their recorded mode and owner, top down; the ones made."""
        created: list[bytes] = []
        try:
            for parent in item.get("parents") or []:
                where = unescape_to_bytes(parent["path"])
                try:
                    info = os.stat(where)
                except FileNotFoundError:
                    os.mkdir(where, 0o700)
                    created.append(where)
                    os.chown(where, int(parent["uid"]), int(parent["gid"]), follow_symlinks=False)
                    os.chmod(where, int(parent["mode"]))
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    raise conflict_at(where, info, f" where the directory {parent['path']} was")
        except BaseException:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(made)
            raise
        return created

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


def _parents(path: bytes) -> list[dict[str, Any]]:
    """Every ancestor directory, from / down, with its mode and owner."""
    ancestors = []
    current = os.path.dirname(path)
    while True:
        ancestors.append(current)
        if current in (b"/", b""):
            break
        current = os.path.dirname(current)
    rows = []
    for directory in reversed(ancestors):
        info = os.stat(directory or b"/")
        rows.append(
            {
                "path": escape_bytes(directory or b"/"),
                "mode": stat.S_IMODE(info.st_mode),
                "uid": info.st_uid,
                "gid": info.st_gid,
            }
        )
    return rows


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _fsync_dir(directory: Path | bytes) -> None:
    fd = os.open(directory, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

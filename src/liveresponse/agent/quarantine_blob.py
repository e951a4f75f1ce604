"""The vault's blob format: one quarantined file's content, encrypted, and what it costs on disk.

A blob is ``MAGIC | salt (16 bytes)`` followed by chunks ``length (4 bytes, big
endian) | AES-256-GCM ciphertext`` of at most 1 MiB of plaintext each (an empty
file is one empty chunk). The blob's key is derived from the vault key and the
salt (HKDF-SHA256), so nonces never repeat across blobs; a chunk's nonce is its
counter plus a final-chunk flag and the header is authenticated with every
chunk, so a reordered, truncated or spliced blob fails to decrypt. Content is
streamed both ways: no file is held whole in memory (SPEC §7).

Room. A blob is as large as its file's size (plus 24 bytes of header and 20 per
chunk), whatever the file holds on disk: a sparse file is stored whole, its
holes as zeros (DR-14 does not ask for holes to be kept, and an attacker's 100
GiB sparse file is then refused, not written). Before a blob is written
``require_room`` checks the free space of the vault's file system
(``f_bavail * f_frsize``, what an unprivileged writer may use) and refuses,
naming the numbers in bytes, unless the blob fits and leaves a reserve free:
5% of the file system or 1 GiB, whichever is smaller, so a remediation never
fills the disk the agent and the device's logs live on.

A blob is written to ``.tmp-<name>`` and published by rename after fsync; a
writer killed half-way leaves the ``.tmp-`` file, which
``remove_partial_blobs`` clears at the next start.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from liveresponse.agent.platform.linux.nofollow_paths import fsync_dir
from liveresponse.protocol.errors import CommandFailed

CHUNK_BYTES = 1024 * 1024
KEY_BYTES = 32
MAGIC = b"LRQV\x00\x00\x00\x01"
PARTIAL_PREFIX = ".tmp-"
BLOB_SUFFIX = ".qv"
RESERVE_FRACTION = 0.05  # of the file system kept free after a blob is written...
RESERVE_MAX_BYTES = 1024**3  # ...or this much, whichever is smaller
_SALT_BYTES = 16
_HEADER_BYTES = len(MAGIC) + _SALT_BYTES
_TAG_BYTES = 16
_LENGTH = struct.Struct(">I")
_HKDF_INFO = b"liveresponse quarantine blob v1"
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Oversized(Exception):
    """The file gave more bytes than it had when its room was checked (it grew while being read)."""


def blob_bytes(plaintext_bytes: int) -> int:
    """The size of the blob of a file of ``plaintext_bytes``."""
    chunks = max(1, -(-plaintext_bytes // CHUNK_BYTES))
    return _HEADER_BYTES + plaintext_bytes + chunks * (_LENGTH.size + _TAG_BYTES)


def reserve_bytes(filesystem_bytes: int) -> int:
    """What stays free on the vault's file system after a blob: 5% of it or 1 GiB, whichever is smaller."""
    return min(int(filesystem_bytes * RESERVE_FRACTION), RESERVE_MAX_BYTES)


def require_room(directory: Path, plaintext_bytes: int, shown: str, allocated_bytes: int | None = None) -> None:
    """Refuse (CommandFailed, nothing written) unless a blob of ``plaintext_bytes`` fits with the reserve left."""
    fs = os.statvfs(directory)
    free = fs.f_bavail * fs.f_frsize
    reserve = reserve_bytes(fs.f_blocks * fs.f_frsize)
    needed = blob_bytes(plaintext_bytes)
    if needed + reserve <= free:
        return
    sparse = ""
    if allocated_bytes is not None and allocated_bytes < plaintext_bytes:
        sparse = f" ({shown} is sparse, {allocated_bytes} bytes on disk, but a quarantined copy is stored whole)"
    raise CommandFailed(
        f"cannot quarantine {shown}: its encrypted copy needs {needed} bytes{sparse} and the vault's file system"
        f" ({directory}) has {free} bytes free, of which {reserve} must stay free (5% of the file system or"
        " 1 GiB, whichever is smaller); nothing done",
        needed_bytes=needed,
        free_bytes=free,
        reserve_bytes=reserve,
    )


def cipher_for(vault_key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_HKDF_INFO).derive(vault_key)
    return AESGCM(derived)


def write_blob(vault_key: bytes, source_fd: int, directory: Path, name: str, max_bytes: int) -> str:
    """Encrypt the open file into ``directory/name`` (published by rename after fsync); its sha256.

    More than ``max_bytes`` of plaintext raises :class:`Oversized`, and nothing is left behind.
    """
    salt = secrets.token_bytes(_SALT_BYTES)
    header = MAGIC + salt
    cipher = cipher_for(vault_key, salt)
    digest = hashlib.sha256()
    tmp = directory / f"{PARTIAL_PREFIX}{name}"
    out_fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600)
    try:
        with open(out_fd, "wb", closefd=True) as out:
            out.write(header)
            counter = 0
            total = 0
            chunk = read_chunk(source_fd)
            while True:
                total += len(chunk)
                if total > max_bytes:
                    raise Oversized()
                following = read_chunk(source_fd) if chunk else b""
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
        os.rename(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return digest.hexdigest()


def read_blob(vault_key: bytes, path: Path) -> Iterator[bytes]:
    """The plaintext chunks of the blob at ``path``; CommandFailed if it is missing or does not authenticate."""
    damaged = CommandFailed(f"the quarantined copy {path.name} is damaged; nothing restored")
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise CommandFailed(f"the quarantined copy {path.name} is not in the vault; nothing restored") from None
    try:
        header = source.read(_HEADER_BYTES)
        if len(header) != _HEADER_BYTES or not header.startswith(MAGIC):
            raise damaged
        cipher = cipher_for(vault_key, header[len(MAGIC) :])
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


def remove_partial_blobs(directory: Path, older_than_ns: int) -> list[str]:
    """Remove the ``.tmp-*.qv`` files a killed writer left, modified before ``older_than_ns``; their names.

    Only regular files of that name go: a published blob (no prefix) is never touched, nor a partial
    blob written since (a writer of this process, or of another one still running).
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted(names):
        if not (name.startswith(PARTIAL_PREFIX) and name.endswith(BLOB_SUFFIX)):
            continue
        path = directory / name
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mtime_ns < older_than_ns:
                path.unlink()
                removed.append(name)
        except FileNotFoundError:
            continue
    if removed:
        fsync_dir(directory)
    return removed


def read_chunk(fd: int) -> bytes:
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


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")

"""Reading a regular file's content for fileinfo: three hashes in one pass, and the magic prefix.

md5 runs in a second thread over each block while sha1 and sha256 run in this
one (hashlib releases the GIL on large buffers): md5 alone takes as long as the
other two together, so a large file is hashed in about half the time.

The file is opened only after lstat said it is a regular file, and opened so
that nothing can block or surprise us if it was swapped in between: no symlink
following, non-blocking (a FIFO put in its place cannot hang the agent), and
re-checked with fstat to be the very inode that was described.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from liveresponse.agent.platform.linux.file_magic import MAGIC_PREFIX_BYTES

READ_BUFFER_BYTES = 4 * 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class FileReplaced(OSError):
    """The path no longer names the inode that was described."""


@dataclass(frozen=True)
class ContentDigest:
    md5: str
    sha1: str
    sha256: str
    prefix: bytes  # the first MAGIC_PREFIX_BYTES bytes, for file_magic.describe


def _open_described(path: bytes, described: os.stat_result) -> int:
    fd = os.open(path, _OPEN_FLAGS)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (described.st_dev, described.st_ino):
        os.close(fd)
        raise FileReplaced(f"{path!r} was replaced while being described")
    return fd


def digest(path: bytes, described: os.stat_result, check_cancelled: Callable[[], None]) -> ContentDigest:
    """md5, sha1 and sha256 of the file in one read pass, checking for cancel between chunks."""
    md5, sha1, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    buffer = bytearray(READ_BUFFER_BYTES)
    view = memoryview(buffer)
    prefix = b""
    with (
        io.FileIO(_open_described(path, described), "rb", closefd=True) as content,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="fileinfo-md5") as helper,
    ):
        while True:
            check_cancelled()
            count = content.readinto(buffer)
            if not count:
                break
            chunk = view[:count]
            if len(prefix) < MAGIC_PREFIX_BYTES:
                prefix += bytes(chunk[: MAGIC_PREFIX_BYTES - len(prefix)])
            md5_done = helper.submit(md5.update, chunk)
            sha1.update(chunk)
            sha256.update(chunk)
            md5_done.result()  # the buffer is read into again only when every hash is done with it
    return ContentDigest(md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), prefix)


def read_prefix(path: bytes, described: os.stat_result) -> bytes:
    """The first bytes only, for a file too large to hash."""
    with io.FileIO(_open_described(path, described), "rb", closefd=True) as content:
        return content.read(MAGIC_PREFIX_BYTES) or b""

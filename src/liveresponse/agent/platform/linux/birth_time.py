"""File creation (birth) time through statx(2).

Python 3.11 has no ``st_birthtime`` on Linux, but the kernel reports it since
4.11 on ext4, xfs, btrfs and tmpfs. We call glibc's ``statx`` through ctypes;
where the call or the field is unavailable the answer is ``None`` (SPEC §5:
``created`` is null, never a guess).
"""

from __future__ import annotations

import ctypes
import struct
from functools import cache
from typing import Any

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BTIME = 0x800
_STATX_BUFFER_BYTES = 256  # sizeof(struct statx)
_MASK_OFFSET = 0
_BTIME_OFFSET = 80  # struct statx: stx_btime follows stx_atime at 64


@cache
def _libc_statx() -> Any | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


def birth_time_ns(path: bytes) -> int | None:
    """Birth time of ``path`` itself (symbolic links not followed) in ns since the epoch."""
    statx = _libc_statx()
    if statx is None:
        return None
    buffer = ctypes.create_string_buffer(_STATX_BUFFER_BYTES)
    if statx(_AT_FDCWD, path, _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, buffer) != 0:
        return None
    (mask,) = struct.unpack_from("=I", buffer, _MASK_OFFSET)
    if not mask & _STATX_BTIME:
        return None
    seconds, nanoseconds = struct.unpack_from("=qI", buffer, _BTIME_OFFSET)
    if seconds == 0 and nanoseconds == 0:
        return None  # image builders write a zero creation time meaning "not recorded"
    return int(seconds) * 1_000_000_000 + int(nanoseconds)

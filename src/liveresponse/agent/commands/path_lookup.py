"""Looking up the path an analyst named, with the one set of errors dir, cd, fileinfo and findfile give.

A missing path is ``NotFound``; a path we may not see, or that the system
refuses for another reason, is ``CommandFailed`` with the system's wording.
Messages show the path in its escaped form (SPEC §5), so it can be typed back.
"""

from __future__ import annotations

import os
import stat

from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes


def stat_or_fail(path: bytes, *, follow: bool, missing: str, action: str) -> os.stat_result:
    """``os.stat`` (``follow``) or ``os.lstat`` of ``path``; ``missing`` and ``action`` word the errors:
    "no such file: X", "permission denied: X", "cannot <action> X: <reason>"."""
    shown = escape_bytes(path)
    try:
        return os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise NotFound(f"{missing}: {shown}") from None
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    except OSError as error:
        raise CommandFailed(f"cannot {action} {shown}: {error.strerror}") from None


def directory_or_fail(path: bytes, *, action: str) -> os.stat_result:
    """The directory ``path`` names, links followed; anything else is an error."""
    info = stat_or_fail(path, follow=True, missing="no such directory", action=action)
    if not stat.S_ISDIR(info.st_mode):
        raise CommandFailed(f"not a directory: {escape_bytes(path)}")
    return info

"""findfile: files whose name matches, across local file systems (SPEC §5).

The walk lives in ``platform/linux/name_search.py`` and the choice of mounts in
``platform/linux/mounts.py``. Decisions made here:

* The start root is searched even when it is a pseudo or network file system
  (the analyst named it); below it, such mount points are skipped. Local
  mounts hidden under a skipped one (``/dev/shm``) are searched as extra roots.
* A root given through a symbolic link is resolved first, so every path shown
  is a real path, and mount points compare correctly.
* Unreadable directories are skipped silently: one unreadable directory must
  not fail a device-wide search.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.commands.path_lookup import directory_or_fail
from liveresponse.agent.platform import require_linux
from liveresponse.agent.platform.linux import file_metadata, mounts
from liveresponse.agent.platform.linux.name_search import NameMatch, NameSearch, compile_name_matcher
from liveresponse.protocol.errors import CommandFailed
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

COMMAND = "findfile"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    pattern_bytes = unescape_to_bytes(args["name"])
    if not pattern_bytes or b"/" in pattern_bytes:
        raise CommandFailed(f"findfile matches one file name, not a path: {args['name']!r}")
    root = _checked_root(ctx, args.get("path") or "/")
    plan = mounts.plan_search(root, mounts.read_mounts())
    search = NameSearch(
        compile_name_matcher(os.fsdecode(pattern_bytes)),
        {os.fsdecode(point) for point in plan.skipped_mount_points},
        ctx.check_cancelled,
    )
    return _rows(search, [root, *plan.extra_roots])


def _checked_root(ctx: CommandContext, text: str) -> bytes:
    given = ctx.resolve_path(text)
    directory_or_fail(given, action="search")
    return os.path.realpath(given)


def _rows(search: NameSearch, roots: list[bytes]) -> Iterator[Row]:
    for root in roots:
        for match in search.walk(os.fsdecode(root)):
            yield _row(match)


def _shown_path(path: str) -> str:
    # Fast path for the common case: ASCII without backslashes is its own escaped form
    # (a str holding surrogate-escaped bytes is never ASCII, so it takes the full route).
    if path.isascii() and "\\" not in path:
        return path
    return escape_bytes(os.fsencode(path))


def _row(match: NameMatch) -> Row:
    return {
        "path": _shown_path(match.path),
        "size": match.stat.st_size,
        "modified": file_metadata.modified(match.stat),
        "type": file_metadata.listing_type(match.stat.st_mode),
    }

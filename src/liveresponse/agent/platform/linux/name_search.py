"""Walking directory trees for file names, fast and safe (SPEC §5 findfile).

* Symbolic links are never followed: a directory is entered only when its
  ``d_type`` (no stat) says it is a real directory, and it is opened with
  ``O_NOFOLLOW``. A symlink loop therefore cannot loop, and every file is found
  once, at its real path.
* Depth is not limited by PATH_MAX: directories are opened relative to an
  *anchor* directory descriptor. When the path below the anchor grows past
  :data:`ANCHOR_SPLIT_BYTES` the directory becomes the new anchor, so every
  path handed to the kernel stays short while the shown path grows without limit.
* Only matches are stat-ed; names are compared with one precompiled matcher.

Names come from ``os.scandir(fd)`` as ``str`` decoded by the file-system
encoding with ``surrogateescape``, which is lossless; callers turn paths back
into bytes with ``os.fsencode`` before showing them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# A child path is at most 256 bytes (slash and NAME_MAX) longer than its parent,
# so below 2048 bytes every path we open stays far below PATH_MAX (4096).
ANCHOR_SPLIT_BYTES = 2048
_CHARS_BEFORE_MEASURING = ANCHOR_SPLIT_BYTES // 4  # a str char is at most 4 bytes in UTF-8

NameMatcher = Callable[[str], object]


def compile_name_matcher(pattern: str) -> NameMatcher:
    """Exact names compare directly; globs become one compiled regex (fnmatch rules,
    case-sensitive as Linux names are)."""
    if not any(ch in pattern for ch in "*?["):
        return pattern.__eq__
    return re.compile(fnmatch.translate(pattern)).match


@dataclass(frozen=True)
class NameMatch:
    path: str  # absolute, file-system-decoded (os.fsencode gives the real bytes)
    stat: os.stat_result


@dataclass
class WalkCounters:
    directories_scanned: int = 0
    directories_unreadable: int = 0


class NameSearch:
    """One search: a matcher, the directories not to enter, and a cancel check run per directory."""

    def __init__(
        self, matcher: NameMatcher, skipped_directories: Collection[str], check_cancelled: Callable[[], None]
    ) -> None:
        self._matches = matcher
        self._skipped = frozenset(skipped_directories)
        self._check_cancelled = check_cancelled
        self.counters = WalkCounters()

    def walk(self, root: str) -> Iterator[NameMatch]:
        """Matches below ``root`` (an absolute path of a directory, searched even if skipped)."""
        try:
            anchor = os.open(root, _DIRECTORY_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            self.counters.directories_unreadable += 1
            return
        try:
            yield from self._walk_from_anchor(anchor, root)
        finally:
            os.close(anchor)

    def _walk_from_anchor(self, anchor: int, anchor_path: str) -> Iterator[NameMatch]:
        # Each pending directory: (path relative to the anchor, shown absolute path).
        pending: list[tuple[str, str]] = [(".", anchor_path)]
        matches = self._matches
        skipped = self._skipped
        counters = self.counters
        while pending:
            self._check_cancelled()
            relative, shown = pending.pop()
            if len(relative) > _CHARS_BEFORE_MEASURING and len(os.fsencode(relative)) > ANCHOR_SPLIT_BYTES:
                yield from self._walk_as_new_anchor(anchor, relative, shown)
                continue
            try:
                directory = os.open(relative, _DIRECTORY_FLAGS, dir_fd=anchor)
            except FileNotFoundError:
                continue  # removed since it was listed
            except OSError:
                counters.directories_unreadable += 1  # permission, or swapped for a symlink (ELOOP)
                continue
            counters.directories_scanned += 1
            relative_prefix = "" if relative == "." else relative + "/"
            shown_prefix = "/" if shown == "/" else shown + "/"
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        name = entry.name
                        if matches(name):
                            found = self._stat_match(entry)
                            if found is not None:
                                yield NameMatch(shown_prefix + name, found)
                        if entry.is_dir(follow_symlinks=False):
                            child_shown = shown_prefix + name
                            if child_shown not in skipped:
                                pending.append((relative_prefix + name, child_shown))
            except OSError:
                counters.directories_unreadable += 1  # e.g. EIO mid-listing; keep what was read
            finally:
                os.close(directory)

    @staticmethod
    def _stat_match(entry: os.DirEntry[str]) -> os.stat_result | None:
        try:
            return entry.stat(follow_symlinks=False)
        except OSError:
            return None  # vanished between readdir and stat

    def _walk_as_new_anchor(self, anchor: int, relative: str, shown: str) -> Iterator[NameMatch]:
        try:
            new_anchor = os.open(relative, _DIRECTORY_FLAGS, dir_fd=anchor)
        except FileNotFoundError:
            return
        except OSError:
            self.counters.directories_unreadable += 1
            return
        try:
            yield from self._walk_from_anchor(new_anchor, shown)
        finally:
            os.close(new_anchor)

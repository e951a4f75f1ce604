"""The mount table, and which mounts a file-system-wide search must leave out (SPEC §5 findfile).

A search "across local file systems" skips two kinds of mount:

* pseudo file systems: kernel views (proc, sysfs, cgroup...) whose files are
  not on any disk, can be endless or can have side effects when walked
  (autofs triggers mounts);
* network file systems: walking a share is slow, loads a server, and its files
  are not this device's.

A local file system mounted *inside* a skipped one (``/dev/shm`` is a tmpfs on
the devtmpfs ``/dev``) cannot be reached by the walk, yet attackers like to drop
files there; :func:`plan_search` returns such mounts as extra roots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MOUNTINFO_PATH = "/proc/self/mountinfo"

PSEUDO_FS_TYPES = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs",
        "binfmt_misc", "efivarfs", "rpc_pipefs", "nsfs", "selinuxfs", "smackfs", "apparmorfs", "usbfs",
        "xenfs", "nfsd", "sockfs", "pipefs", "anon_inodefs", "functionfs", "gadgetfs", "ipathfs",
        "cpuset", "rdmacg", "resctrl", "zonefs", "binder", "oprofilefs", "spufs",
    }
)  # fmt: skip

NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "ceph", "glusterfs", "lustre",
        "gpfs", "beegfs", "orangefs", "pvfs2", "9p", "davfs", "ocfs2", "gfs2", "fuse.sshfs",
        "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.davfs2",
        "fuse.juicefs", "fuse.goofys", "fuse.blobfuse", "fuse.blobfuse2", "fuse.lizardfs", "fuse.moosefs",
    }
)  # fmt: skip


class FileSystemKind(StrEnum):
    LOCAL = "local"
    PSEUDO = "pseudo"
    NETWORK = "network"


def kind_of(fs_type: str) -> FileSystemKind:
    if fs_type in PSEUDO_FS_TYPES:
        return FileSystemKind.PSEUDO
    if fs_type in NETWORK_FS_TYPES:
        return FileSystemKind.NETWORK
    return FileSystemKind.LOCAL


@dataclass(frozen=True)
class Mount:
    mount_point: bytes
    fs_type: str
    source: bytes

    @property
    def kind(self) -> FileSystemKind:
        return kind_of(self.fs_type)


# mountinfo writes space, tab, newline and backslash in paths as three-digit octal escapes.
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescape_field(field: bytes) -> bytes:
    return _OCTAL_ESCAPE.sub(lambda match: bytes([int(match.group(1), 8)]), field)


def parse_mountinfo(text: bytes) -> list[Mount]:
    """Parse /proc/PID/mountinfo (proc(5)): ``id parent major:minor root mount_point options
    [optional fields...] - fs_type source super_options``."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(b" ")
        try:
            separator = fields.index(b"-", 6)
            mount_point = _unescape_field(fields[4])
            fs_type = fields[separator + 1].decode("utf-8", "replace")
            source = _unescape_field(fields[separator + 2])
        except (ValueError, IndexError):
            continue  # a malformed line hides one mount; the search still runs
        mounts.append(Mount(mount_point, fs_type, source))
    return mounts


def read_mounts() -> list[Mount]:
    """Mounts of this process's namespace; none when /proc is not mounted (nothing is skipped then)."""
    try:
        with open(MOUNTINFO_PATH, "rb") as mountinfo:
            return parse_mountinfo(mountinfo.read())
    except OSError:
        return []


def effective_mounts(mounts: list[Mount]) -> dict[bytes, Mount]:
    """The visible mount at each mount point: of stacked mounts, the last one listed is on top."""
    visible: dict[bytes, Mount] = {}
    for mount in mounts:
        visible[mount.mount_point] = mount
    return visible


def is_strictly_under(path: bytes, ancestor: bytes) -> bool:
    if ancestor == b"/":
        return path != b"/" and path.startswith(b"/")
    return path.startswith(ancestor + b"/")


@dataclass(frozen=True)
class SearchPlan:
    """Where a search from ``root`` goes: the mount points it must not enter, and the
    local mounts below skipped ones that it must visit as roots of their own."""

    root: bytes
    skipped_mount_points: frozenset[bytes]
    extra_roots: tuple[bytes, ...]


def plan_search(root: bytes, mounts: list[Mount]) -> SearchPlan:
    """Plan a search of ``root``.

    The root itself is always searched, even when it is a pseudo or network file
    system: an analyst who names ``-path /proc`` or a share asked for it. Below
    the root, pseudo and network mount points are skipped.
    """
    below_root = {point: mount for point, mount in effective_mounts(mounts).items() if is_strictly_under(point, root)}
    skipped = frozenset(point for point, mount in below_root.items() if mount.kind is not FileSystemKind.LOCAL)
    extra_roots: list[bytes] = []
    for point, mount in sorted(below_root.items()):
        if mount.kind is not FileSystemKind.LOCAL:
            continue
        # The mount whose directory holds this mount point decides whether the walk gets here.
        holders = [other for other in below_root if is_strictly_under(point, other)]
        if holders and max(holders, key=len) in skipped:
            extra_roots.append(point)
    return SearchPlan(root, skipped, tuple(extra_roots))


def plan_one_file_system(root: bytes, mounts: list[Mount]) -> SearchPlan:
    """Like ``find -xdev``: every mount point below ``root`` is skipped (used by the benchmark)."""
    below_root = frozenset(point for point in effective_mounts(mounts) if is_strictly_under(point, root))
    return SearchPlan(root, below_root, ())


def pseudo_file_system_of(path: bytes) -> str | None:
    """The type of the pseudo file system (proc, sysfs...) an absolute real ``path`` is on, if it is on one:
    such files are made up by the kernel as they are read (/proc/self/pagemap reads for minutes)."""
    best: Mount | None = None
    best_length = -1
    for mount in effective_mounts(read_mounts()).values():
        point = mount.mount_point.rstrip(b"/") + b"/"
        if (path.rstrip(b"/") + b"/").startswith(point) and len(point) > best_length:
            best, best_length = mount, len(point)
    return best.fs_type if best is not None and best.kind is FileSystemKind.PSEUDO else None

"""findfile against real trees planted in tmp_path: names, links, loops, depth, mounts, cancel."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from liveresponse.agent.commands import fileinfo, findfile
from liveresponse.agent.commands.context import Cancelled, CommandContext
from liveresponse.agent.platform.linux import mounts
from liveresponse.agent.platform.linux.name_search import NameSearch, compile_name_matcher
from liveresponse.protocol.errors import CommandFailed, NotFound

MTIME_NS = 1_600_000_000_000_000_000
MTIME_SHOWN = "2020-09-13T12:26:40.000000Z"


def find(root: Path | str, name: str, ctx: CommandContext | None = None) -> list[dict[str, object]]:
    return list(findfile.run(ctx or CommandContext(), {"name": name, "path": str(root)}))


def paths(rows: list[dict[str, object]]) -> list[object]:
    return sorted(row["path"] for row in rows)


def write(path: Path | bytes, content: bytes = b"x") -> None:
    with open(path, "wb") as planted:
        planted.write(content)


def test_exact_name_rows_are_exact(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write(tmp_path / "a" / "b" / "target.txt", b"12345")
    os.utime(tmp_path / "a" / "b" / "target.txt", ns=(MTIME_NS, MTIME_NS))
    write(tmp_path / "a" / "target.txt.bak")
    assert find(tmp_path, "target.txt") == [
        {"path": f"{tmp_path}/a/b/target.txt", "size": 5, "modified": MTIME_SHOWN, "type": "file"}
    ]


def test_glob_is_fnmatch_and_case_sensitive(tmp_path: Path) -> None:
    for name in ("one.log", "two.log", "THREE.LOG", "four.log.1", ".hidden.log"):
        write(tmp_path / name)
    (tmp_path / "dir.log").mkdir()
    rows = find(tmp_path, "*.log")
    assert paths(rows) == [f"{tmp_path}/{name}" for name in (".hidden.log", "dir.log", "one.log", "two.log")]
    assert {row["path"]: row["type"] for row in rows}[f"{tmp_path}/dir.log"] == "dir"
    assert paths(find(tmp_path, "t?o.log")) == [f"{tmp_path}/two.log"]
    assert paths(find(tmp_path, "[ot]*.log")) == [f"{tmp_path}/one.log", f"{tmp_path}/two.log"]
    assert find(tmp_path, "one.LOG") == []


def test_relative_root_resolves_against_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "x.cfg")
    rows = list(findfile.run(CommandContext(cwd=str(tmp_path)), {"name": "x.cfg", "path": "sub"}))
    assert paths(rows) == [f"{tmp_path}/sub/x.cfg"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"with space.txt", "with space.txt"),
        (b"single'quote", "single'quote"),
        (b'double"quote', 'double"quote'),
        (b"back\\slash", "back\\slash"),
        (b"back\\x41literal", "back\\x5cx41literal"),
        (b"-leading-dash", "-leading-dash"),
        (b"bad\xff\xfename", "bad\\xff\\xfename"),
    ],
)
def test_awkward_names_are_found_escaped_and_the_shown_path_works(tmp_path: Path, raw: bytes, shown: str) -> None:
    directory = os.path.join(bytes(tmp_path), b"in\xfedir")
    os.mkdir(directory)
    content = b"planted " + raw
    write(os.path.join(directory, raw), content)
    rows = find(tmp_path, shown)  # the shown form is also the input form
    assert paths(rows) == [f"{tmp_path}/in\\xfedir/{shown}"]
    described = fileinfo.run(CommandContext(), {"path": rows[0]["path"]})
    assert described["sha256"] == hashlib.sha256(content).hexdigest()


def test_glob_over_non_utf8_names(tmp_path: Path) -> None:
    write(os.path.join(bytes(tmp_path), b"bad\xff.bin"))
    assert paths(find(tmp_path, "bad*.bin")) == [f"{tmp_path}/bad\\xff.bin"]


def test_symlink_loop_finds_the_file_once_at_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "target.txt")
    os.symlink("..", tmp_path / "a" / "loop")
    os.symlink(".", tmp_path / "a" / "self")
    assert paths(find(tmp_path, "target.txt")) == [f"{tmp_path}/a/target.txt"]


def test_a_matching_symlink_is_reported_once_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    write(tmp_path / "real" / "payload")
    os.symlink(tmp_path / "real", tmp_path / "payload-dir")
    os.symlink("real/payload", tmp_path / "alias")
    rows = find(tmp_path, "payload*")
    assert [(row["path"], row["type"]) for row in sorted(rows, key=lambda row: str(row["path"]))] == [
        (f"{tmp_path}/payload-dir", "link"),
        (f"{tmp_path}/real/payload", "file"),
    ]
    assert [row["type"] for row in find(tmp_path, "alias")] == ["link"]


def test_a_root_given_through_a_symlink_shows_real_paths(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    write(tmp_path / "real" / "f.txt")
    os.symlink(tmp_path / "real", tmp_path / "via-link")
    assert paths(find(tmp_path / "via-link", "f.txt")) == [f"{tmp_path}/real/f.txt"]


def test_a_path_deeper_than_path_max_is_found(tmp_path: Path) -> None:
    component = b"d" * 200
    depth = 25  # 25 * 201 bytes: well past PATH_MAX (4096)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(component, dir_fd=fd)
            child = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        target = os.open(b"deep-target", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(target, b"deep")
        os.close(target)
    finally:
        os.close(fd)
    expected = str(tmp_path) + ("/" + "d" * 200) * depth + "/deep-target"
    assert len(expected) > 4096
    rows = find(tmp_path, "deep-target")
    assert [(row["path"], row["size"]) for row in rows] == [(expected, 4)]


def results_as_nobody(root: Path, name: str) -> tuple[list[str], int]:
    """Run a search as an unprivileged user (root reads every directory), in a forked child."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(reader)
            os.setgid(65534)
            os.setuid(65534)
            search = NameSearch(compile_name_matcher(name), (), lambda: None)
            found = [match.path for match in search.walk(str(root))]
            os.write(writer, json.dumps([found, search.counters.directories_unreadable]).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as output:
        data = output.read()
    os.waitpid(child, 0)
    found, unreadable = json.loads(data)
    return found, unreadable


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unreadable_directories_are_skipped_and_counted() -> None:
    # tmp_path sits in root's private directory; this tree must be reachable by nobody.
    root = Path(tempfile.mkdtemp(prefix="findfile-perm-"))
    try:
        root.chmod(0o755)
        for relative, mode in (("open", 0o755), ("closed", 0o700)):
            (root / relative).mkdir()
            write(root / relative / "needle")
            (root / relative).chmod(mode)
        found, unreadable = results_as_nobody(root, "needle")
        assert found == [f"{root}/open/needle"]
        assert unreadable == 1
    finally:
        shutil.rmtree(root)


def test_missing_root_and_file_root_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "file")
    with pytest.raises(NotFound, match=f"no such directory: {tmp_path}/missing"):
        find(tmp_path / "missing", "x")
    with pytest.raises(CommandFailed, match=f"not a directory: {tmp_path}/file"):
        find(tmp_path / "file", "x")
    with pytest.raises(CommandFailed, match="one file name, not a path"):
        find(tmp_path, "a/b")


def fake_mountinfo(*mounts_below: tuple[Path, str]) -> list[mounts.Mount]:
    table = [mounts.Mount(b"/", "ext4", b"/dev/root")]
    table += [mounts.Mount(bytes(point), fs_type, b"none") for point, fs_type in mounts_below]
    return table


def test_pseudo_and_network_mounts_are_skipped_and_local_mounts_inside_them_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for relative in ("fakeproc", "fakeproc/shm", "share", "disk"):
        (tmp_path / relative).mkdir()
        write(tmp_path / relative / "needle")
    table = fake_mountinfo(
        (tmp_path / "fakeproc", "proc"),
        (tmp_path / "fakeproc" / "shm", "tmpfs"),
        (tmp_path / "share", "nfs4"),
        (tmp_path / "disk", "xfs"),
    )
    monkeypatch.setattr(mounts, "read_mounts", lambda: table)
    assert paths(find(tmp_path, "needle")) == [f"{tmp_path}/disk/needle", f"{tmp_path}/fakeproc/shm/needle"]
    # A root the analyst names is searched even when it is a pseudo or network file system.
    assert paths(find(tmp_path / "share", "needle")) == [f"{tmp_path}/share/needle"]
    assert paths(find(tmp_path / "fakeproc", "needle")) == [
        f"{tmp_path}/fakeproc/needle",
        f"{tmp_path}/fakeproc/shm/needle",
    ]


def test_an_explicit_proc_root_is_searched() -> None:
    rows = find(f"/proc/{os.getpid()}", "status")
    assert f"/proc/{os.getpid()}/status" in paths(rows)


def test_mountinfo_parsing_and_plan() -> None:
    text = (
        b"22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        b"27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        b"24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw\n"
        b"25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw\n"
        b"40 27 0:50 / /mnt/my\\040share rw master:3 - cifs //srv/s rw\n"
        b"41 27 0:51 / /home rw - btrfs /dev/sdb rw\n"
        b"malformed line\n"
    )
    table = mounts.parse_mountinfo(text)
    assert [(mount.mount_point, mount.fs_type) for mount in table] == [
        (b"/proc", "proc"),
        (b"/", "ext4"),
        (b"/dev", "devtmpfs"),
        (b"/dev/shm", "tmpfs"),
        (b"/mnt/my share", "cifs"),
        (b"/home", "btrfs"),
    ]
    plan = mounts.plan_search(b"/", table)
    assert plan.skipped_mount_points == {b"/proc", b"/dev", b"/mnt/my share"}
    assert plan.extra_roots == (b"/dev/shm",)
    assert mounts.plan_search(b"/dev", table).skipped_mount_points == set()
    assert mounts.plan_one_file_system(b"/", table).skipped_mount_points == {
        b"/proc", b"/dev", b"/dev/shm", b"/mnt/my share", b"/home"
    }  # fmt: skip


def plant_wide_tree(root: Path, directories: int) -> None:
    for index in range(directories):
        directory = root / f"d{index:04d}"
        directory.mkdir()
        write(directory / "hit")


def test_cancel_from_another_thread_stops_the_walk(tmp_path: Path) -> None:
    plant_wide_tree(tmp_path, 400)
    ctx = CommandContext()
    rows = findfile.run(ctx, {"name": "hit", "path": str(tmp_path)})
    next(rows)
    canceller = threading.Thread(target=ctx.cancel_event.set)
    canceller.start()
    canceller.join()
    cancelled_at = time.monotonic()
    produced = 1
    with pytest.raises(Cancelled):
        for _ in rows:
            produced += 1
    assert time.monotonic() - cancelled_at < 0.05
    assert produced < 400


def test_cancel_before_start(tmp_path: Path) -> None:
    ctx = CommandContext()
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        find(tmp_path, "x", ctx)

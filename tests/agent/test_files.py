"""cd, dir, fileinfo and registry handlers against real files planted in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest

from liveresponse.agent.commands import cd, fileinfo, registry_cmd
from liveresponse.agent.commands import dir as dir_cmd
from liveresponse.agent.commands.context import Cancelled, CommandContext
from liveresponse.agent.platform.linux import file_content
from liveresponse.protocol.errors import CommandFailed, NotAvailable, NotFound
from liveresponse.protocol.names import escape_bytes

# Names that break naive quoting or decoding, with the shown (escaped) form each must have.
AWKWARD_NAMES: dict[bytes, str] = {
    b"with space.txt": "with space.txt",
    b"single'quote": "single'quote",
    b'double"quote': 'double"quote',
    b"back\\slash": "back\\slash",
    b"back\\x41literal": "back\\x5cx41literal",
    b"-leading-dash": "-leading-dash",
    b"bad\xff\xfename": "bad\\xff\\xfename",
    b"caf\xc3\xa9": "café",
}
MTIME_NS = 1_700_000_000_123_456_789
MTIME_SHOWN = "2023-11-14T22:13:20.123456Z"


def plant(directory: Path, name: bytes, content: bytes) -> bytes:
    path = os.path.join(bytes(directory), name)
    with open(path, "wb") as planted:
        planted.write(content)
    return path


def content_for(name: bytes) -> bytes:
    return b"content of " + name + b"\n"


@pytest.fixture
def awkward_dir(tmp_path: Path) -> Path:
    for name in AWKWARD_NAMES:
        plant(tmp_path, name, content_for(name))
    return tmp_path


# --- cd ---------------------------------------------------------------------------------------


def test_cd_without_path_prints_the_working_directory() -> None:
    assert cd.run(CommandContext(cwd="/var"), {}) == {"cwd": "/var"}
    assert cd.run(CommandContext(cwd="/var"), {"path": None}) == {"cwd": "/var"}


def test_cd_absolute_relative_and_dotdot(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    ctx = CommandContext(cwd=str(tmp_path))
    assert cd.run(ctx, {"path": "sub"}) == {"cwd": f"{tmp_path}/sub"}
    assert cd.run(CommandContext(cwd=f"{tmp_path}/sub"), {"path": ".."}) == {"cwd": str(tmp_path)}
    assert cd.run(ctx, {"path": str(tmp_path / "sub")}) == {"cwd": f"{tmp_path}/sub"}


def test_cd_into_a_non_utf8_directory_and_use_it_as_cwd(tmp_path: Path) -> None:
    os.mkdir(os.path.join(bytes(tmp_path), b"bad\xff\xfedir"))
    plant(tmp_path / os.fsdecode(b"bad\xff\xfedir"), b"inside.txt", b"x")
    result = cd.run(CommandContext(cwd=str(tmp_path)), {"path": "bad\\xff\\xfedir"})
    assert result == {"cwd": f"{tmp_path}/bad\\xff\\xfedir"}
    rows = dir_cmd.run(CommandContext(cwd=result["cwd"]), {})
    assert [row["path"] for row in rows] == [f"{tmp_path}/bad\\xff\\xfedir/inside.txt"]


def test_cd_errors_name_the_path(tmp_path: Path) -> None:
    plant(tmp_path, b"file", b"x")
    with pytest.raises(NotFound, match=f"no such directory: {tmp_path}/missing"):
        cd.run(CommandContext(), {"path": str(tmp_path / "missing")})
    with pytest.raises(CommandFailed, match=f"not a directory: {tmp_path}/file"):
        cd.run(CommandContext(), {"path": str(tmp_path / "file")})


# --- dir --------------------------------------------------------------------------------------


def test_dir_lists_awkward_names_sorted_and_each_shown_path_works_again(awkward_dir: Path) -> None:
    rows = dir_cmd.run(CommandContext(), {"path": str(awkward_dir)})
    assert [row["name"] for row in rows] == [AWKWARD_NAMES[name] for name in sorted(AWKWARD_NAMES)]
    for row in rows:
        assert row["path"] == f"{awkward_dir}/{row['name']}"
        assert row["type"] == "file"
        described = fileinfo.run(CommandContext(), {"path": row["path"]})
        raw_name = next(raw for raw, shown in AWKWARD_NAMES.items() if shown == row["name"])
        assert described["sha256"] == hashlib.sha256(content_for(raw_name)).hexdigest()
        assert row["size"] == len(content_for(raw_name))


def test_dir_row_fields_exact(tmp_path: Path) -> None:
    path = plant(tmp_path, b"tool", b"#!/bin/sh\n")
    os.chown(path, 54321, 54322)  # ids without accounts: names fall back to the numbers
    os.chmod(path, 0o4750)  # after chown, which clears the setuid bit
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    os.symlink(b"tool", os.path.join(bytes(tmp_path), b"tool-link"))
    os.mkdir(tmp_path / "subdir")
    os.mkfifo(tmp_path / "pipe")
    rows = {row["name"]: row for row in dir_cmd.run(CommandContext(cwd=str(tmp_path)), {"full_path": True})}
    assert rows["tool"] == {
        "name": "tool",
        "path": f"{tmp_path}/tool",
        "type": "file",
        "size": 10,
        "mode": "-rwsr-x---",
        "mode_octal": "4750",
        "owner": "54321",
        "group": "54322",
        "uid": 54321,
        "gid": 54322,
        "modified": MTIME_SHOWN,
        "link_target": None,
    }
    assert rows["tool-link"]["type"] == "link"
    assert rows["tool-link"]["link_target"] == "tool"
    assert rows["tool-link"]["mode"] == "lrwxrwxrwx"
    assert rows["subdir"]["type"] == "dir"
    assert rows["pipe"]["type"] == "other"
    assert rows["pipe"]["mode"].startswith("p")


def test_dir_of_a_file_lists_that_file(tmp_path: Path) -> None:
    plant(tmp_path, b"only.txt", b"abc")
    rows = dir_cmd.run(CommandContext(), {"path": str(tmp_path / "only.txt")})
    assert [(row["name"], row["path"], row["size"]) for row in rows] == [("only.txt", f"{tmp_path}/only.txt", 3)]


def test_dir_of_a_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"no such file or directory: {tmp_path}/nothing"):
        dir_cmd.run(CommandContext(), {"path": str(tmp_path / "nothing")})


def test_dir_leaves_out_files_removed_while_listing(tmp_path: Path) -> None:
    names = [f"f{i:04d}" for i in range(1500)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    stop = threading.Event()

    def remove_all() -> None:
        for name in names:
            (tmp_path / name).unlink()
        stop.set()

    remover = threading.Thread(target=remove_all)
    remover.start()
    try:
        while not stop.is_set():
            for row in dir_cmd.run(CommandContext(), {"path": str(tmp_path)}):
                assert row["size"] == 1 and row["modified"] and row["mode"] == "-rw-r--r--"
    finally:
        remover.join()
    assert dir_cmd.run(CommandContext(), {"path": str(tmp_path)}) == []


# --- fileinfo ---------------------------------------------------------------------------------


def test_fileinfo_regular_file_fields_and_hashes(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB chunks and a partial one
    path = plant(tmp_path, b"blob.bin", b"\x00" + content)
    os.chmod(path, 0o640)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    info = os.lstat(path)
    row = fileinfo.run(CommandContext(cwd=str(tmp_path)), {"path": "blob.bin"})
    whole = b"\x00" + content
    assert row["path"] == f"{tmp_path}/blob.bin"
    assert row["type"] == "file"
    assert row["size"] == len(whole)
    assert (row["mode"], row["mode_octal"]) == ("-rw-r-----", "0640")
    assert (row["owner"], row["group"], row["uid"], row["gid"]) == ("root", "root", 0, 0)
    assert row["inode"] == info.st_ino
    assert row["modified"] == row["accessed"] == MTIME_SHOWN
    assert row["changed"].endswith("Z")
    assert row["created"] is None or row["created"].endswith("Z")
    assert row["md5"] == hashlib.md5(whole).hexdigest()
    assert row["sha1"] == hashlib.sha1(whole).hexdigest()
    assert row["sha256"] == hashlib.sha256(whole).hexdigest()
    assert row["magic"] == "data"
    assert row["link_target"] is None
    assert row["hash_skipped_reason"] is None


@pytest.mark.parametrize(
    ("content", "magic"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00" + bytes(40), "ELF 64-bit LSB executable"),
        (b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x03\x00" + bytes(40), "ELF 32-bit LSB shared object"),
        (b"#!/bin/sh\necho hi\n", "script text executable (/bin/sh)"),
        (b"#!/usr/bin/env python3\nprint()\n", "script text executable (python3)"),
        (gzip.compress(b"hello"), "gzip compressed data"),
        (b"%PDF-1.7\n", "PDF document"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "PNG image data"),
        (b"plain words\n", "ASCII text"),
        ("grüße\n".encode(), "UTF-8 text"),
        (b"", "empty"),
        (b"\x01\x02\x03\x00", "data"),
    ],
)
def test_fileinfo_magic(tmp_path: Path, content: bytes, magic: str) -> None:
    plant(tmp_path, b"sample", content)
    assert fileinfo.run(CommandContext(), {"path": str(tmp_path / "sample")})["magic"] == magic


def test_fileinfo_magic_zip(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        writer.writestr("a.txt", "a")
    plant(tmp_path, b"a.zip", archive.getvalue())
    assert fileinfo.run(CommandContext(), {"path": str(tmp_path / "a.zip")})["magic"] == "Zip archive data"


def test_fileinfo_of_a_fifo_returns_at_once_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    results: list[dict[str, object]] = []
    worker = threading.Thread(
        target=lambda: results.append(fileinfo.run(CommandContext(), {"path": str(tmp_path / "pipe")}))
    )
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "fileinfo blocked on a FIFO"
    (row,) = results
    assert row["type"] == "fifo"
    assert row["mode"].startswith("p")
    assert (row["md5"], row["sha1"], row["sha256"]) == (None, None, None)
    assert row["magic"] == "fifo (named pipe)"


def test_fileinfo_of_a_symlink_describes_the_link(tmp_path: Path) -> None:
    plant(tmp_path, b"target", b"abc")
    os.symlink(b"target", tmp_path / "link")
    row = fileinfo.run(CommandContext(), {"path": str(tmp_path / "link")})
    assert row["type"] == "link"
    assert row["link_target"] == "target"
    assert row["size"] == len("target")
    assert row["sha256"] is None


def test_fileinfo_of_a_directory_has_metadata_and_no_hashes(tmp_path: Path) -> None:
    row = fileinfo.run(CommandContext(), {"path": str(tmp_path)})
    assert row["type"] == "dir"
    assert row["mode"].startswith("d")
    assert (row["md5"], row["sha1"], row["sha256"]) == (None, None, None)


def test_fileinfo_of_a_socket_and_a_device(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
        assert fileinfo.run(CommandContext(), {"path": str(tmp_path / "sock")})["type"] == "socket"
    row = fileinfo.run(CommandContext(), {"path": "/dev/null"})
    assert row["type"] == "char_device"
    assert row["sha256"] is None


def test_fileinfo_over_the_hash_limit_says_why(tmp_path: Path) -> None:
    plant(tmp_path, b"big", b"#!/bin/sh\n0")
    row = fileinfo.run(CommandContext(fileinfo_hash_max_bytes=10), {"path": str(tmp_path / "big")})
    assert (row["md5"], row["sha1"], row["sha256"]) == (None, None, None)
    assert row["hash_skipped_reason"] == "size 11 bytes is over fileinfo_hash_max_bytes (10 bytes)"
    assert row["magic"] == "script text executable (/bin/sh)"


def test_fileinfo_of_an_unreadable_file_keeps_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which reads any file, so the open itself is made to fail.
    def refuse(path: bytes, described: os.stat_result) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(file_content, "_open_described", refuse)
    plant(tmp_path, b"secret", b"s")
    row = fileinfo.run(CommandContext(), {"path": str(tmp_path / "secret")})
    assert row["size"] == 1
    assert row["sha256"] is None
    assert row["hash_skipped_reason"] == f"cannot read {tmp_path}/secret: Permission denied"


def test_fileinfo_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"no such file: {tmp_path}/missing"):
        fileinfo.run(CommandContext(), {"path": str(tmp_path / "missing")})


def test_fileinfo_hashing_stops_when_cancelled(tmp_path: Path) -> None:
    plant(tmp_path, b"f", b"x" * 10)
    ctx = CommandContext()
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        fileinfo.run(ctx, {"path": str(tmp_path / "f")})


def test_fileinfo_shows_escaped_names(awkward_dir: Path) -> None:
    raw = os.path.join(bytes(awkward_dir), b"bad\xff\xfename")
    row = fileinfo.run(CommandContext(), {"path": f"{awkward_dir}/bad\\xff\\xfename"})
    assert row["path"] == escape_bytes(raw) == f"{awkward_dir}/bad\\xff\\xfename"
    assert row["sha256"] == hashlib.sha256(content_for(b"bad\xff\xfename")).hexdigest()


# --- registry ---------------------------------------------------------------------------------


def test_registry_is_not_available_on_linux() -> None:
    with pytest.raises(NotAvailable, match="registry is not available on linux"):
        registry_cmd.run(CommandContext(), {"key": "HKLM\\SOFTWARE"})

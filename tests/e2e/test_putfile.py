"""putfile on a real agent (SPEC §5): sha256 verified, -overwrite, traversal refused, -keep across a boot."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import json_documents, upload


def test_putfile_refuses_without_overwrite_and_replaces_with_it(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "put-notes.txt"
    source.write_bytes(b"version one\n")
    upload(cluster, source, "--overwrite")
    first = cluster.console("putfile put-notes.txt -overwrite -output json")
    assert first.returncode == 0, first.stderr
    row = json.loads(first.stdout)
    assert set(row) >= {"name", "path", "size", "sha256", "kept"}
    placed = Path(row["path"])
    assert placed.parent == cluster.agent_state / "files"
    assert stat.S_IMODE(placed.parent.stat().st_mode) == 0o700
    assert placed.read_bytes() == b"version one\n"
    assert row["sha256"] == hashlib.sha256(b"version one\n").hexdigest() and row["kept"] is False

    source.write_bytes(b"version two, longer\n")
    upload(cluster, source, "--overwrite")
    result = cluster.console("putfile put-notes.txt", "putfile put-notes.txt -overwrite -keep -output json")
    assert result.returncode == 1
    assert "already exists in the working folder" in result.stderr and "-overwrite" in result.stderr
    (replaced,) = json_documents(result.stdout)
    assert isinstance(replaced, dict) and replaced["overwritten"] is True and replaced["kept"] is True
    assert placed.read_bytes() == b"version two, longer\n"


def test_traversal_and_unknown_names_are_refused(cluster: Cluster) -> None:
    result = cluster.console("putfile ../x", "putfile ../../etc/passwd -overwrite", "putfile no-such-file.txt")
    assert result.returncode == 1
    assert result.stderr.count("traversal") == 2
    assert "no library file 'no-such-file.txt'" in result.stderr
    assert not (cluster.agent_state / "x").exists()


def test_files_without_keep_go_at_the_next_boot(cluster: Cluster, tmp_path: Path) -> None:
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("boot-one\n")
    saved_args = cluster.agent_args
    cluster.stop_agent()
    cluster.agent_args = [*saved_args, "--boot-id-file", str(boot_id)]
    try:
        cluster.start_agent()
        for name in ("put-temp.txt", "put-kept.txt"):
            (tmp_path / name).write_bytes(name.encode())
            upload(cluster, tmp_path / name, "--overwrite")
        result = cluster.console("putfile put-temp.txt -overwrite", "putfile put-kept.txt -overwrite -keep")
        assert result.returncode == 0, result.stderr
        folder = cluster.agent_state / "files"
        assert (folder / "put-temp.txt").exists() and (folder / "put-kept.txt").exists()

        cluster.stop_agent()  # same boot: an agent restart keeps both
        cluster.start_agent()
        assert (folder / "put-temp.txt").exists()

        cluster.stop_agent()
        boot_id.write_text("boot-two\n")  # the device rebooted
        cluster.start_agent()
        assert not (folder / "put-temp.txt").exists()
        assert (folder / "put-kept.txt").read_bytes() == b"put-kept.txt"
    finally:
        cluster.stop_agent()
        cluster.agent_args = saved_args
        cluster.start_agent()

"""Real server, real agent, real console: files with hostile names (issue: walking skeleton)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from liveresponse.testing.cluster import Cluster

PLANTED: dict[bytes, bytes] = {
    b"with space.txt": b"space\n",
    b"it's": b"single quote\n",
    b'say "hi"': b"double quote\n",
    b"back\\slash": b"backslash\n",
    b"-dash": b"leading dash\n",
    b"bad\xff\xfename": b"not utf-8\n" * 3,
    b"x\\x41y": b"looks like an escape\n",
}
SHOWN = {
    b"with space.txt": "with space.txt",
    b"it's": "it's",
    b'say "hi"': 'say "hi"',
    b"back\\slash": "back\\slash",
    b"-dash": "-dash",
    b"bad\xff\xfename": "bad\\xff\\xfename",
    b"x\\x41y": "x\\x5cx41y",
}


def quote(text: str) -> str:
    """A console word for any text: double quotes, inner ones doubled (SPEC §4)."""
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture()
def planted(tmp_path: Path) -> Path:
    root = tmp_path / "evidence dir"
    root.mkdir()
    for name, content in PLANTED.items():
        with open(os.path.join(os.fsencode(root), name), "wb") as fh:
            fh.write(content)
    return root


def run_json(cluster: Cluster, line: str) -> object:
    result = cluster.console(line + " -output json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dir_shows_every_hostile_name_exactly(cluster: Cluster, planted: Path) -> None:
    rows = run_json(cluster, f"dir {quote(str(planted))}")
    assert isinstance(rows, list)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(SHOWN.values())
    for raw, shown in SHOWN.items():
        row = by_name[shown]
        assert row["size"] == len(PLANTED[raw])
        assert row["type"] == "file"
        assert row["path"] == f"{planted}/{shown}"


def test_fileinfo_of_each_shown_name_gives_its_sha256(cluster: Cluster, planted: Path) -> None:
    for raw, shown in SHOWN.items():
        info = run_json(cluster, f"fileinfo {quote(str(planted) + '/' + shown)}")
        assert isinstance(info, dict)
        assert info["sha256"] == hashlib.sha256(PLANTED[raw]).hexdigest(), shown
        assert info["md5"] == hashlib.md5(PLANTED[raw]).hexdigest()
        assert info["size"] == len(PLANTED[raw])


def json_documents(text: str) -> list[object]:
    decoder = json.JSONDecoder()
    docs, pos = [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
    return docs


def test_single_quotes_and_dash_need_the_language_rules(cluster: Cluster, planted: Path) -> None:
    # 'it''s' doubles the quote; -- lets a name with a leading dash through as a value.
    lines = [f"cd {quote(str(planted))}", "fileinfo 'it''s'", "fileinfo -output json -- -dash"]
    result = cluster.console(*lines, output="json")
    assert result.returncode == 0, result.stderr
    cd, first, second = json_documents(result.stdout)
    assert cd == {"cwd": str(planted)}
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["sha256"] == hashlib.sha256(PLANTED[b"it's"]).hexdigest()
    assert second["sha256"] == hashlib.sha256(PLANTED[b"-dash"]).hexdigest()


def test_a_dash_word_without_double_dash_is_a_parameter_name(cluster: Cluster, planted: Path) -> None:
    result = cluster.console(f"cd {quote(str(planted))}", "fileinfo -dash")
    assert result.returncode == 1
    assert "fileinfo has no parameter -dash" in result.stderr
    assert "usage: fileinfo <path>" in result.stderr


def test_relative_paths_resolve_against_cd(cluster: Cluster, planted: Path) -> None:
    result = cluster.console(f"cd {quote(str(planted))}", '"FileInfo" "with space.txt"', output="json")
    # a quoted command name is still a name (case-insensitive): the first word is always the command
    assert result.returncode == 0, result.stderr
    _cd, info = json_documents(result.stdout)
    assert isinstance(info, dict)
    assert info["path"] == f"{planted}/with space.txt"


def test_fifo_is_described_never_read(cluster: Cluster, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    info = run_json(cluster, f"fileinfo {quote(str(fifo))}")
    assert isinstance(info, dict)
    assert info["type"] == "fifo"
    assert info["sha256"] is None and info["md5"] is None


def test_findfile_through_a_symlink_loop_finds_the_file_once(cluster: Cluster, tmp_path: Path) -> None:
    top = tmp_path / "loop top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "needle.bin").write_bytes(b"n" * 17)
    (top / "a" / "b" / "back").symlink_to(top / "a")
    (top / "a" / "self").symlink_to(".")
    rows = run_json(cluster, f"findfile needle.bin -path {quote(str(top))}")
    assert isinstance(rows, list)
    assert [(r["path"], r["size"]) for r in rows] == [(f"{top}/a/b/needle.bin", 17)]


def test_findfile_glob(cluster: Cluster, planted: Path) -> None:
    rows = run_json(cluster, f"findfile *.txt -path {quote(str(planted))}")
    assert isinstance(rows, list)
    assert [r["path"] for r in rows] == [f"{planted}/with space.txt"]


def test_redirect_writes_the_json_document(cluster: Cluster, planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "analyst side"
    out.mkdir()
    line = f"dir {quote(str(planted))} -output json > listing.json"
    result = cluster.console(line, f"fileinfo {quote(str(planted) + '/-dash')} -output json >> listing.json", cwd=out)
    assert result.returncode == 0, result.stderr
    text = (out / "listing.json").read_text()
    first, end = json.JSONDecoder().raw_decode(text)
    second = json.loads(text[end:])
    assert {r["name"] for r in first} == set(SHOWN.values())
    assert second["size"] == len(PLANTED[b"-dash"])
    assert result.stdout == ""


def test_commands_from_stdin(cluster: Cluster, planted: Path) -> None:
    stdin = f"dir {quote(str(planted))} -output json\n"
    result = subprocess.run(
        [*__import__("liveresponse.testing.cluster", fromlist=["lr_command"]).lr_command("console", cluster.device_id)],
        input=stdin,
        capture_output=True,
        text=True,
        env=cluster.env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {r["name"] for r in json.loads(result.stdout)} == set(SHOWN.values())

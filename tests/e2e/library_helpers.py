"""Shared steps of the library, putfile and run tests (real server, real agent, real CLI)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from liveresponse.testing.cluster import Cluster, lr_command


def lr(cluster: Cluster, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(lr_command(*args), env=cluster.env(user), capture_output=True, text=True, timeout=60)


def upload(cluster: Cluster, path: Path, *extra: str) -> dict[str, object]:
    result = lr(cluster, "library", "upload", str(path), "--output", "json", *extra)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert isinstance(row, dict)
    return row


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


def console_word(text: str) -> str:
    """Any text as one console word: double quotes, inner ones doubled (SPEC §4)."""
    return '"' + text.replace('"', '""') + '"'


@contextmanager
def setting(cluster: Cluster, key: str, value: str, restore: str) -> Iterator[None]:
    cluster.admin("settings", "set", key, value)
    try:
        yield
    finally:
        cluster.admin("settings", "set", key, restore)

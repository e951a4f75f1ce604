"""Every row a handler returns carries every field the catalogue lists for its command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.commands.dispatch import handlers
from liveresponse.protocol.catalogue import lookup
from tests.agent.planting import plant, plant_boot_and_login, plant_jobs, plant_user_timer

LIVE_ROWS_COMMANDS = ("connections", "drivers", "persistence", "processes", "scheduledtasks", "services",
                      "startupfolders")  # fmt: skip
ROOT_COMMANDS = ("persistence", "scheduledtasks", "services", "startupfolders")


def missing_fields(command: str, rows: list[dict]) -> list[tuple[int, set[str]]]:
    wanted = set(lookup(command).fields)
    return [(index, wanted - set(row)) for index, row in enumerate(rows) if not wanted <= set(row)]


@pytest.mark.parametrize("command", LIVE_ROWS_COMMANDS)
def test_live_rows_have_the_catalogue_fields(command: str) -> None:
    rows = list(handlers()[command](CommandContext(), {}))  # type: ignore[arg-type]
    assert missing_fields(command, rows) == []


@pytest.mark.parametrize("command", ROOT_COMMANDS)
def test_planted_root_rows_have_the_catalogue_fields(command: str, tmp_path: Path) -> None:
    plant_jobs(tmp_path)
    plant_user_timer(tmp_path)
    plant_boot_and_login(tmp_path)
    # Drop-ins that are directories: "not checked: is a directory" rows, which even root gets.
    (tmp_path / "etc/systemd/system/evil.service.d/bad.conf").mkdir(parents=True)
    (tmp_path / "usr/lib/systemd/system/clean.timer.d/bad.conf").mkdir(parents=True)
    rows = list(handlers()[command](CommandContext(root=str(tmp_path)), {}))  # type: ignore[arg-type]
    if command != "startupfolders":
        assert any(row.get("checked") is False for row in rows)
    assert rows and missing_fields(command, rows) == []


def test_file_rows_have_the_catalogue_fields(tmp_path: Path) -> None:
    plain = plant(tmp_path, "/file.txt", "text\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("file.txt")
    rows = list(handlers()["dir"](CommandContext(), {"path": str(tmp_path)}))  # type: ignore[arg-type]
    assert len(rows) == 3 and missing_fields("dir", rows) == []
    described = [handlers()["fileinfo"](CommandContext(), {"path": str(tmp_path / name)})
                 for name in ("file.txt", "fifo", "link")]  # fmt: skip
    assert missing_fields("fileinfo", described) == []  # type: ignore[arg-type]
    found = list(handlers()["findfile"](CommandContext(), {"name": plain.name, "path": str(tmp_path)}))  # type: ignore[arg-type]
    assert len(found) == 1 and missing_fields("findfile", found) == []

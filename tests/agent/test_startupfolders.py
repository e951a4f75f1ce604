"""startupfolders: XDG autostart entries, system and per user."""

from __future__ import annotations

from pathlib import Path

from liveresponse.agent.commands import startupfolders
from liveresponse.agent.commands.context import CommandContext
from tests.agent.planting import PASSWD, plant


def test_system_and_user_entries(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", PASSWD)
    plant(
        tmp_path,
        "/etc/xdg/autostart/tray.desktop",
        "[Desktop Entry]\nName=Tray\nName[fr]=Plateau\nExec=/usr/bin/tray\n",
    )
    plant(tmp_path, "/etc/xdg/autostart/README", "not an entry\n")
    plant(tmp_path, "/home/alice/.config/autostart/tray.desktop",
          "[Desktop Entry]\nName=Alice tray\nExec=/home/alice/tray\nX-GNOME-Autostart-enabled=false\n")  # fmt: skip
    plant(tmp_path, "/home/bob/.config/autostart/sync.desktop",
          "[Desktop Action x]\nExec=/ignored\n"
          "[Desktop Entry]\nName=Sync\nExec=/home/bob/sync --bg\nOnlyShowIn=GNOME;\n")  # fmt: skip
    rows = list(startupfolders.run(CommandContext(root=str(tmp_path)), {}))
    summary = [(r["path"], r["name"], r["exec"], r["user"], r["enabled"], r["overrides"]) for r in rows]
    assert summary == [
        ("/etc/xdg/autostart/tray.desktop", "Tray", "/usr/bin/tray", "(all users)", True, None),
        ("/home/alice/.config/autostart/tray.desktop", "Alice tray", "/home/alice/tray", "alice", False,
         "/etc/xdg/autostart/tray.desktop"),
        ("/home/bob/.config/autostart/sync.desktop", "Sync", "/home/bob/sync --bg", "bob", True, None),
    ]  # fmt: skip
    assert rows[2]["only_show_in"] == "GNOME;" and rows[0]["modified"].endswith("Z")
    assert all(r["root"] == str(tmp_path) for r in rows)


def test_root_parameter_overrides_the_agent_root(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", PASSWD)
    plant(tmp_path, "/etc/xdg/autostart/a.desktop", "[Desktop Entry]\nName=A\nExec=/a\n")
    rows = list(startupfolders.run(CommandContext(root="/nonexistent-root"), {"root": str(tmp_path)}))
    assert [(r["name"], r["exec"]) for r in rows] == [("A", "/a")]


def test_non_utf8_exec_is_escaped(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", PASSWD)
    path = tmp_path / "etc/xdg/autostart/odd.desktop"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[Desktop Entry]\nName=Odd\nExec=/tmp/\xff\xfeevil\n")
    rows = list(startupfolders.run(CommandContext(root=str(tmp_path)), {}))
    assert rows[0]["exec"] == "/tmp/\\xff\\xfeevil"


def test_live_system_lists_without_error() -> None:
    for row in startupfolders.run(CommandContext(), {}):
        assert set(row) >= {"path", "name", "exec", "user"}

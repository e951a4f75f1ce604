"""Asking a running systemd about its services (``systemctl show``).

Only used on the live system when systemd is PID 1; it knows what the unit files
cannot tell: the real main pid from its cgroup bookkeeping and the active state.
Unit files that are installed but not loaded are listed from
``list-unit-files`` so a disabled service still shows.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

_PROPERTIES = "Id,Description,ActiveState,SubState,UnitFileState,MainPID,ExecStart,FragmentPath,User,Names"
_ARGV = re.compile(r"argv\[\]=(.*?) ;")
_TIMEOUT_S = 30
_BATCH = 200


def _run(*args: str) -> str:
    done = subprocess.run(
        ["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=True
    )
    return done.stdout


def _service_names() -> list[str]:
    names: set[str] = set()
    for line in _run("list-units", "--type=service", "--all", "--plain", "--no-legend").splitlines():
        if line.split():
            names.add(line.split()[0].lstrip("●* "))
    for line in _run("list-unit-files", "--type=service", "--no-legend").splitlines():
        words = line.split()
        if words and not words[0].endswith("@.service"):
            names.add(words[0])
    return sorted(n for n in names if n.endswith(".service"))


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def service_rows() -> list[dict[str, Any]]:
    names = _service_names()
    rows: list[dict[str, Any]] = []
    for start in range(0, len(names), _BATCH):
        output = _run("show", f"--property={_PROPERTIES}", *names[start : start + _BATCH])
        for block in _blocks(output):
            rows.append(_row(block))
    return rows


def _row(block: dict[str, str]) -> dict[str, Any]:
    active = block.get("ActiveState", "")
    main_pid = int(block.get("MainPID") or 0) or None
    commands = _ARGV.findall(block.get("ExecStart", ""))
    state = {"active": "running", "reloading": "running", "activating": "running"}.get(active)
    if state is None:
        state = "stopped" if active in ("inactive", "failed", "deactivating") else "unknown"
    names = block.get("Names", "").split()
    return {
        "name": block.get("Id"),
        "description": block.get("Description") or None,
        "state": state,
        "enabled": block.get("UnitFileState") or None,
        "main_pid": main_pid,
        "exec": "; ".join(commands) if commands else None,
        "unit_file": block.get("FragmentPath") or None,
        "kind": "systemd",
        "scope": "system",
        "user": block.get("User") or "root",
        "aliases": sorted(n for n in names if n != block.get("Id")),
        "dropins": [],
        "sub_state": block.get("SubState") or None,
        "state_reason": None,
    }

"""analyze: a verdict on a file or a process (SPEC §5; the engines are in agent/analysis/).

    analyze file PATH     the file (a symbolic link: its target, and the result says so)
    analyze process PID   the process's image through /proc/PID/exe, deleted or not, and where it runs from

The tenant's indicators and YARA rules arrive as the intel bundle the signed
envelope names (agent/analysis/intel.py); it is fetched only when not cached.
The result: ``verdict``, ``findings`` (engine, result, reason, rule), ``type``,
``target`` (as typed), ``path`` (absolute), ``real_path`` (links resolved), ``size``,
``sha256``, ``engines`` (what each engine checked), ``intel`` (the bundle used, and
whether it came from memory, disk or the server), ``duration_s``, and for a process
``pid``, ``name``, ``cmdline``, ``exe_deleted``.
"""

from __future__ import annotations

import time
from typing import Any

from liveresponse.agent.analysis.engines import Limits, examine
from liveresponse.agent.analysis.intel import load_intel
from liveresponse.agent.analysis.target import open_file, open_process_image
from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux
from liveresponse.protocol.errors import CommandFailed
from liveresponse.protocol.names import escape_bytes

COMMAND = "analyze"
_MARGIN_S = 1.0  # YARA must give up before the runner's timer cancels the command


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    require_linux(COMMAND)
    started = time.monotonic()
    limits = Limits(ctx.fileinfo_hash_max_bytes, "fileinfo_hash_max_bytes", started + ctx.timeout_s - _MARGIN_S)
    kind = str(args["type"]).lower()
    target = str(args["target"])
    if kind == "process":
        pid = _pid(target)
        opened, record = open_process_image(pid)
        extra: Row = {
            "pid": pid,
            "name": escape_bytes(record.full_name),
            "cmdline": [escape_bytes(arg) for arg in record.cmdline],
            "exe_deleted": opened.deleted,
        }
        path = opened.location
    else:
        path = ctx.resolve_path(target)
        opened = open_file(path)
        extra = {"pid": None}
    try:
        ctx.check_cancelled()
        intel = load_intel(ctx)
        ctx.check_cancelled()
        found = examine(opened, intel, limits, ctx.check_cancelled, process=kind == "process")
    finally:
        opened.close()
    result: Row = {
        "verdict": found["verdict"],
        "findings": found["findings"],
        "type": kind,
        "target": target,
        "path": escape_bytes(path),
        "real_path": escape_bytes(opened.location),
        "size": found["size"],
        "sha256": found["sha256"],
        **extra,
        "engines": found["engines"],
        "intel": {"sha256": intel.sha256, "from": intel.source},
        "duration_s": round(time.monotonic() - started, 3),
    }
    if opened.notes:
        result["notes"] = opened.notes
    return result


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise CommandFailed(f"analyze process takes a process id, a positive number, not {text!r}")
    return int(text)

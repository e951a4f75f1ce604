"""processes: list processes with full names and full command lines (SPEC §5).

``cpu_percent`` is the lifetime average, CPU time over wall time since start,
as ``ps`` shows it: sampling would mean sleeping inside the command.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterator
from typing import Any

from liveresponse.agent.commands.context import CommandContext, Row
from liveresponse.agent.platform import require_linux
from liveresponse.agent.platform.linux import file_metadata, process_table
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_seconds
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes

COMMAND = "processes"


def run(ctx: CommandContext, args: dict[str, Any]) -> Iterator[Row]:
    require_linux(COMMAND)
    pid = args.get("pid")
    name_pattern = args.get("name")
    if pid is not None:
        return iter([_one_process(int(pid))])
    return _all_processes(ctx, _compile_name_filter(name_pattern) if name_pattern else None)


def _one_process(pid: int) -> Row:
    if pid <= 0:
        raise CommandFailed(f"a process id is a positive number, not {pid}")
    try:
        record = process_table.read_process(pid, process_table.boot_time_s())
    except process_table.ProcessGone:
        raise NotFound(f"no process with pid {pid}") from None
    return _row(record, time.time())


def _compile_name_filter(pattern: str) -> re.Pattern[str]:
    # fnmatch.translate of a name without wildcards matches exactly that name.
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


def _all_processes(ctx: CommandContext, name_filter: re.Pattern[str] | None) -> Iterator[Row]:
    now_s = time.time()
    for record in process_table.read_processes(ctx.check_cancelled):
        row = _row(record, now_s)
        if name_filter is None or name_filter.match(row["name"]):
            yield row


def _cpu_percent(record: process_table.ProcessRecord, now_s: float) -> float:
    elapsed_s = now_s - record.start_time_s
    if elapsed_s <= 0:
        return 0.0
    return round(100.0 * record.cpu_time_s / elapsed_s, 1)


def _row(record: process_table.ProcessRecord, now_s: float) -> Row:
    return {
        "pid": record.pid,
        "ppid": record.ppid,
        "name": escape_bytes(record.full_name),
        "user": file_metadata.owner_name(record.effective_uid),
        "uid": record.effective_uid,
        "state": record.state,
        "cmdline": [escape_bytes(argument) for argument in record.cmdline],
        "exe": None if record.exe is None else escape_bytes(record.exe),
        "exe_deleted": record.exe_deleted,
        "started": iso_utc_from_seconds(record.start_time_s),
        "cpu_percent": _cpu_percent(record, now_s),
        "rss": record.rss_bytes,
        "threads": record.threads,
    }

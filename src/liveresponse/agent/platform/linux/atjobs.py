"""Jobs queued with at(1), read from the spool.

Spools: ``/var/spool/cron/atjobs`` (Debian, Ubuntu), ``/var/spool/at`` (RHEL,
Fedora), ``/var/spool/atjobs`` (SUSE). A job file is named ``QJJJJJTTTTTTTT``:
queue letter, job number (5 hex digits) and run time in minutes since the epoch
(8 hex digits), as atd writes it. The file is a shell script atd built: a
``# atrun uid=N`` header, the saved environment, a ``cd DIR || {...}`` block and
then the user's commands — since at 3.1.14 inside a ``<< 'marcinDELIMITER...'``
here-document, which is unwrapped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from liveresponse.agent.platform.linux.passwd import User, name_for_uid
from liveresponse.agent.platform.linux.rootfs import Reader
from liveresponse.protocol.names import escape_bytes

AT_SPOOLS = ("/var/spool/cron/atjobs", "/var/spool/at", "/var/spool/atjobs")
_JOB_NAME = re.compile(r"^([a-zA-Z=])([0-9a-f]{5})([0-9a-f]{8})$")
_UID = re.compile(rb"^# atrun uid=(\d+)", re.MULTILINE)
_HEREDOC = re.compile(rb"<<\s*'(marcinDELIMITER[0-9a-fA-F]+)'\s*$")


@dataclass(frozen=True)
class AtJob:
    source: str
    job: int
    queue: str
    run_at: datetime
    user: str
    command: str  # escaped text; several lines joined with "\n"


def command_of(script: bytes) -> bytes:
    lines = script.split(b"\n")
    for index, line in enumerate(lines):
        match = _HEREDOC.search(line)
        if match:
            end = next((i for i in range(index + 1, len(lines)) if lines[i] == match.group(1)), len(lines))
            return b"\n".join(lines[index + 1 : end]).strip(b"\n")
    # Older atd: the commands follow the closing brace of the "cd ... || {" block.
    for index, line in enumerate(lines):
        if line.startswith(b"cd ") and line.rstrip().endswith(b"{"):
            close = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == b"}"), None)
            if close is not None:
                return b"\n".join(lines[close + 1 :]).strip(b"\n")
    return script.strip(b"\n")


def collect_at_jobs(reader: Reader, users: list[User]) -> list[AtJob]:
    jobs: list[AtJob] = []
    for spool in reader.fs.distinct(AT_SPOOLS):
        for path in reader.files_in(spool):
            match = _JOB_NAME.match(path.rsplit("/", 1)[1])
            if not match:
                continue  # .SEQ and lock files
            data = reader.read(path)
            if data is None:
                continue
            uid_match = _UID.search(data)
            if uid_match:
                user = name_for_uid(users, int(uid_match.group(1)))
            else:
                user = name_for_uid(users, reader.fs.lstat(path).st_uid)
            run_at = datetime.fromtimestamp(int(match.group(3), 16) * 60, UTC)
            command = command_of(data)
            jobs.append(AtJob(path, int(match.group(2), 16), match.group(1), run_at, user, escape_bytes(command)))
    return jobs

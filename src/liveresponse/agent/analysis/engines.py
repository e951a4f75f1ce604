"""The three engines over one opened file, and the result object of ``analyze`` (SPEC §5).

    hash        sha256 of the content, streamed (cancellable between chunks), looked up in the
                tenant's indicator list: a hit is a finding with the indicator's verdict
    yara        every tenant rule, matched by YARA on the opened file: a finding per rule that matched
    heuristics  heuristics.py: for a file, or for a process's image and location

Files over ``fileinfo_hash_max_bytes`` are neither hashed nor scanned (the
heuristics still run) and ``engines`` says why. Cancel is honoured between engines
and while hashing; YARA's scan has its own timeout, what is left of the command's.
The heuristics see metadata and the first ``HEAD_BYTES`` only.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liveresponse.agent.analysis import heuristics
from liveresponse.agent.analysis.heuristics import Examined
from liveresponse.agent.analysis.intel import Intel
from liveresponse.agent.analysis.target import Opened
from liveresponse.agent.analysis.yara_rules import externals_for, scan

Finding = dict[str, Any]
READ_BUFFER_BYTES = 1024 * 1024
VERDICT_ORDER = ("malicious", "suspicious")


def sha256_of(fd: int, check_cancelled: Callable[[], None]) -> tuple[str, int]:
    """sha256 and length of everything in ``fd``, read by position, checking for cancel between chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_BUFFER_BYTES)
    view = memoryview(buffer)
    offset = 0
    while True:
        check_cancelled()
        count = os.preadv(fd, [buffer], offset)
        if not count:
            return digest.hexdigest(), offset
        digest.update(view[:count])
        offset += count


def verdict_of(findings: list[Finding]) -> str:
    for verdict in VERDICT_ORDER:
        if any(f["result"] == verdict for f in findings):
            return verdict
    return "clean"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def hash_findings(intel: Intel, sha256: str) -> list[Finding]:
    hit = intel.indicators.get(sha256)
    if hit is None:
        return []
    verdict, title = hit
    reason = f"sha256 {sha256} is on the tenant indicator list: {title}"
    return [{"engine": "hash", "result": verdict, "reason": reason, "rule": sha256}]


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # fileinfo_hash_max_bytes: above it, no hash and no YARA scan
    limit_name: str
    deadline: float  # time.monotonic() when the command's timeout is reached


def examine(
    opened: Opened,
    intel: Intel,
    limits: Limits,
    check_cancelled: Callable[[], None],
    process: bool = False,
) -> dict[str, Any]:
    """verdict, findings, size, sha256 and engines of one opened file (a process's image when ``process``).

    The hash comes first and the YARA scan after it, in this thread. Hashing beside the scan in a
    second thread gained nothing on the two loaded cores bench/analyze.py ran on, would take a second
    core from the device, and would make a cancel wait for the scan.
    """
    info = opened.info
    head = os.pread(opened.fd, heuristics.HEAD_BYTES, 0)
    engines: dict[str, str] = {}
    findings: list[Finding] = []
    sha256: str | None = None
    size = info.st_size
    if size > limits.max_bytes:
        over = f"skipped: {size} bytes is over {limits.limit_name}={limits.max_bytes}"
        engines["hash"] = over
        engines["yara"] = over
    else:
        sha256, size = sha256_of(opened.fd, check_cancelled)
        engines["hash"] = _plural(len(intel.indicators), "indicator")
        findings += hash_findings(intel, sha256)
        check_cancelled()
        externals = externals_for(opened.location, heuristics.content_kind(head))
        findings += scan(intel.rules, opened.fd, externals, limits.deadline - time.monotonic())
        engines["yara"] = intel.rules.describe()
    check_cancelled()
    examined = Examined(info, head, opened.location)
    if process:
        findings += heuristics.process_findings(examined, opened.deleted)
        engines["heuristics"] = ", ".join(heuristics.PROCESS_CHECKS)
    else:
        findings += heuristics.file_findings(examined)
        engines["heuristics"] = ", ".join(heuristics.FILE_CHECKS)
    return {"verdict": verdict_of(findings), "findings": findings, "size": size, "sha256": sha256, "engines": engines}

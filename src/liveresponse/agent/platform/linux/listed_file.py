"""How a file differs from the row a listing gave of it (DR-14: remediation acts on what was listed).

The listing is fileinfo's row for a file (``inode``, ``size``, ``sha256``,
``modified``, ``changed``), or facts a remediation read itself (``dev``,
``inode``, ``size``, ``ctime_ns``). Only the facts given are compared. When the
row has no sha256 (fileinfo does not hash a file over
``fileinfo_hash_max_bytes``), a same-size edit in place keeps inode and size, so
the row's ``modified`` and ``changed`` are compared with the file's times in the
text form fileinfo writes (timestamps.py, microseconds): a write changes both,
and one whose mtime was set back afterwards still changes ``changed``.
"""

from __future__ import annotations

import os
from typing import Any

from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns

NO_SHA256 = "the listing has no sha256, so its times are compared"


def differences(expect: dict[str, Any], info: os.stat_result, sha256: str | None = None) -> list[str]:
    """How the file of ``info`` (and content ``sha256``, once read) differs from ``expect``; empty: it does not."""
    found = []
    if expect.get("inode") is not None and int(expect["inode"]) != info.st_ino:
        found.append(f"inode was {expect['inode']}, now {info.st_ino} (replaced)")
    if expect.get("dev") is not None and int(expect["dev"]) != info.st_dev:
        found.append(f"device was {expect['dev']}, now {info.st_dev}")
    if expect.get("size") is not None and int(expect["size"]) != info.st_size:
        found.append(f"size was {expect['size']} bytes, now {info.st_size}")
    if expect.get("ctime_ns") is not None and int(expect["ctime_ns"]) != info.st_ctime_ns:
        was, now = iso_utc_from_ns(int(expect["ctime_ns"])), iso_utc_from_ns(info.st_ctime_ns)
        found.append(f"status change time was {was}, now {now} (rewritten or replaced)")
    if not expect.get("sha256"):
        found += _time_differences(expect, info)
    elif sha256 is not None and expect["sha256"] != sha256:
        found.append(f"sha256 was {expect['sha256']}, now {sha256}")
    return found


def _time_differences(expect: dict[str, Any], info: os.stat_result) -> list[str]:
    found = []
    modified, changed = iso_utc_from_ns(info.st_mtime_ns), iso_utc_from_ns(info.st_ctime_ns)
    if expect.get("modified") is not None and expect["modified"] != modified:
        found.append(f"modified was {expect['modified']}, now {modified}")
    if expect.get("changed") is not None and expect["changed"] != changed and expect.get("ctime_ns") is None:
        found.append(f"changed (status change time) was {expect['changed']}, now {changed} (rewritten or replaced)")
    if found:
        found[-1] += f" ({NO_SHA256})"
    return found

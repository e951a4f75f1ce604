"""Downloads on the analyst's side (SPEC §7): streamed to disk, verified, never overwriting."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from liveresponse.client.api import ApiError, Client, ConnectError, _raise_for

Progress = Callable[[int, int], None]  # (bytes so far, total)
_UNSAFE = re.compile(r"[/\x00]")


def safe_name(name: str) -> str:
    """A file name for the analyst's disk: no separators, never '.' or '..'."""
    cleaned = _UNSAFE.sub("_", name).strip() or "file"
    return "_" + cleaned if cleaned in (".", "..") else cleaned


def free_path(directory: Path, name: str) -> Path:
    """``name`` in ``directory``, or ``name (1)``, ``name (2)``… — never an existing file."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    candidate = directory / name
    n = 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / (f"{stem} ({n}){dot}{ext}")
    return candidate


async def save_download(
    client: Client, download: dict[str, Any], directory: Path, progress: Progress | None = None
) -> Path:
    """Fetch a finished download into ``directory``; its sha256 is checked against the device's."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = str(download["sha256"])
    total = int(download["size"])
    part = directory / f".{download['id']}.part"
    digest = hashlib.sha256()
    done = 0
    try:
        async with client.http.stream("GET", f"/api/v1/downloads/{download['id']}/content", timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            with open(part, "wb") as fh:
                async for block in response.aiter_bytes(1024 * 1024):
                    fh.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                fh.flush()
                os.fsync(fh.fileno())
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise ConnectError(f"download {download['id']} broke off after {done} bytes: {exc}") from None
    if digest.hexdigest() != expected or done != total:
        part.unlink(missing_ok=True)
        raise ApiError(
            "sha256_mismatch",
            f"the downloaded copy ({done} bytes, sha256 {digest.hexdigest()}) does not match the device's "
            f"({total} bytes, sha256 {expected}); nothing was kept",
        )
    target = free_path(directory, safe_name(str(download["name"])))
    os.link(part, target)  # fails rather than overwrite, should a file appear meanwhile
    part.unlink()
    return target

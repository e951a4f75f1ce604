"""Downloads on the analyst's side (SPEC §7): streamed to disk, verified, never overwriting."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import re
import urllib.parse
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
    """Fetch a finished download into ``directory``; its sha256 is checked against the device's.

    The bytes are read in a worker thread with the standard library's blocking
    TLS client: about three times the rate of the asyncio one here (bench/getfile).
    """
    directory.mkdir(parents=True, exist_ok=True)
    expected = str(download["sha256"])
    total = int(download["size"])
    part = directory / f".{download['id']}.part"
    try:
        done, actual = await asyncio.to_thread(_fetch, client, str(download["id"]), part, progress, total)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if actual != expected or done != total:
        part.unlink(missing_ok=True)
        raise ApiError(
            "sha256_mismatch",
            f"the downloaded copy ({done} bytes, sha256 {actual}) does not match the device's "
            f"({total} bytes, sha256 {expected}); nothing was kept",
        )
    target = free_path(directory, safe_name(str(download["name"])))
    os.link(part, target)  # fails rather than overwrite, should a file appear meanwhile
    part.unlink()
    return target


def _fetch(client: Client, download_id: str, part: Path, progress: Progress | None, total: int) -> tuple[int, str]:
    url = urllib.parse.urlparse(client.config.server)
    conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443, context=client.ssl, timeout=60)
    digest = hashlib.sha256()
    done = 0
    try:
        headers = {"authorization": f"Bearer {client.config.token}"}
        conn.request("GET", f"/api/v1/downloads/{download_id}/content", headers=headers)
        response = conn.getresponse()
        if response.status >= 400:
            body = response.read(65536)
            _raise_for(httpx.Response(response.status, content=body))
        buffer = bytearray(1024 * 1024)
        view = memoryview(buffer)
        with open(part, "wb") as fh:
            while count := response.readinto(view):
                fh.write(view[:count])
                digest.update(view[:count])
                done += count
                if progress is not None:
                    progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectError(f"download {download_id} broke off after {done} bytes: {exc}") from None
    finally:
        conn.close()
    return done, digest.hexdigest()

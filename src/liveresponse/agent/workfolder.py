"""The agent's working folder: library files put on the device, and scripts fetched to run (SPEC §5).

Layout inside the state directory (0700)::

    files/          putfile's working folder (0700); files keep their library name
    files.json      per file: sha256, size, kept, and the boot id it was put in
    run/            one private folder per run command, removed when the script ends

A file put without ``-keep`` is removed when the agent starts in a boot other
than the one it was put in. The boot is told by the kernel's boot id
(``/proc/sys/kernel/random/boot_id``); ``lr agent run --boot-id-file PATH`` (or
``LR_AGENT_BOOT_ID_FILE``) points elsewhere, for tests.

Bytes arrive by ``fetch``: ``GET {server}/agent/v1/blobs/{sha256}?ticket=T`` over
the TLS pinned at enrollment, streamed to a temp file in the destination folder
and hashed on the way; the file is published (atomically) only when its sha256
is the one in the signed envelope. No file is held whole in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from liveresponse.agent.state import ensure_private_dir, write_atomic
from liveresponse.agent.tls import pinned_context
from liveresponse.protocol.errors import CommandFailed, Conflict
from liveresponse.protocol.library import check_name

log = logging.getLogger("liveresponse.agent.files")

DEFAULT_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
CHUNK_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int


class WorkFolder:
    def __init__(self, state_dir: Path, server_url: str, ca_path: Path, boot_id_file: Path | None = None) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "files"
        self.manifest_path = state_dir / "files.json"
        self.scratch_root = state_dir / "run"
        self.server_url = server_url.rstrip("/")
        self.ca_path = ca_path
        self.boot_id_file = boot_id_file or DEFAULT_BOOT_ID_FILE
        self._lock = threading.Lock()

    def boot_id(self) -> str:
        try:
            return self.boot_id_file.read_text().strip()
        except OSError as exc:
            log.warning("cannot read the boot id from %s: %s", self.boot_id_file, exc)
            return "unknown"

    # -- manifest --------------------------------------------------------------

    def _manifest(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("%s is damaged; starting a new one", self.manifest_path)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, manifest: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    def clean_after_boot(self) -> list[str]:
        """At agent start: remove files put without -keep in an earlier boot, and leftovers. Returns names removed."""
        ensure_private_dir(self.dir)
        shutil.rmtree(self.scratch_root, ignore_errors=True)
        for leftover in self.dir.glob(".fetch-*"):
            leftover.unlink(missing_ok=True)
        current = self.boot_id()
        removed = []
        with self._lock:
            manifest = self._manifest()
            for name, entry in list(manifest.items()):
                if entry.get("kept") or entry.get("boot_id") == current:
                    continue
                (self.dir / name).unlink(missing_ok=True)
                del manifest[name]
                removed.append(name)
            if removed:
                self._save(manifest)
        for name in removed:
            log.info("removed %s from the working folder: put without -keep before this boot", name)
        return removed

    # -- fetch -------------------------------------------------------------------

    def fetch(self, library: dict[str, Any], into: Path, check_cancelled: Callable[[], None]) -> Fetched:
        """Stream the envelope's library file into a temp file in ``into``; verified by sha256 and size."""
        expected_sha = str(library["sha256"])
        expected_size = int(library["size"])
        url = self.server_url + str(library["path"])
        fd, tmp_name = tempfile.mkstemp(dir=into, prefix=".fetch-")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with (
                os.fdopen(fd, "wb") as fh,
                httpx.Client(verify=pinned_context(str(self.ca_path)), timeout=FETCH_TIMEOUT_S) as http,
                http.stream("GET", url, params={"ticket": str(library["ticket"])}) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise CommandFailed(
                        f"the server refused the download of {library['name']} (HTTP {response.status_code}): "
                        f"{response.text[:200]}"
                    )
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    check_cancelled()  # raises the handler's Cancelled
                    size += len(chunk)
                    if size > expected_size:
                        raise CommandFailed(
                            f"{library['name']}: the server sent more than the {expected_size} bytes announced"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            actual = digest.hexdigest()
            if actual != expected_sha or size != expected_size:
                raise CommandFailed(
                    f"{library['name']}: received {size} bytes with sha256 {actual}, expected {expected_size} bytes "
                    f"with sha256 {expected_sha}: refused, nothing was written"
                )
            os.chmod(tmp, 0o600)
            return Fetched(tmp, actual, size)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise CommandFailed(f"downloading {library['name']} from the server failed: {exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- putfile -------------------------------------------------------------------

    def put(
        self, library: dict[str, Any], keep: bool, overwrite: bool, check_cancelled: Callable[[], None]
    ) -> dict[str, Any]:
        name = check_name(str(library["name"]))
        ensure_private_dir(self.dir)
        final = self.dir / name
        if final.exists() and not overwrite:
            raise Conflict(f"{name} already exists in the working folder ({final}); -overwrite replaces it")
        fetched = self.fetch(library, self.dir, check_cancelled)
        try:
            if overwrite:
                existed = final.exists()
                os.replace(fetched.path, final)
            else:
                try:
                    os.link(fetched.path, final)  # never replaces a file that appeared meanwhile
                except FileExistsError:
                    raise Conflict(
                        f"{name} already exists in the working folder ({final}); -overwrite replaces it"
                    ) from None
                existed = False
        finally:
            fetched.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        with self._lock:
            manifest = self._manifest()
            manifest[name] = {"sha256": fetched.sha256, "size": fetched.size, "kept": keep, "boot_id": self.boot_id()}
            self._save(manifest)
        return {
            "name": name,
            "path": str(final),
            "size": fetched.size,
            "sha256": fetched.sha256,
            "kept": keep,
            "overwritten": existed,
        }

    # -- run -------------------------------------------------------------------------

    def scratch(self) -> Path:
        """A new private folder for one script run; the caller removes it."""
        ensure_private_dir(self.scratch_root)
        return Path(tempfile.mkdtemp(dir=self.scratch_root, prefix="run-"))

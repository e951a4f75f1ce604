"""Content-addressed blobs under DIR/blobs (SPEC §12): written aside, fsynced, published atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest).exists():
            return digest
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.publish(Path(tmp_name), digest)
        return digest

    def publish(self, tmp_path: Path, sha256: str) -> None:
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(tmp_path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

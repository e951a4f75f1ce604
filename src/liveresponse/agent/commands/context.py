"""What a command handler gets from the runner, and how it reports back.

A handler is a plain function ``handler(ctx, args) -> result`` run in a worker
thread. ``args`` holds the parameters already bound and type-checked against
the catalogue (names as in ``protocol.catalogue``, flags as booleans, ints as
ints; ``output`` removed). A handler for a ``rows`` command returns an
iterable of dicts (a generator is best: rows stream to the server in batches
and cancellation is checked between rows); an ``object`` command returns a
dict. Failures are raised as ``protocol.errors`` exceptions (``NotFound``,
``CommandFailed``, ``NotAvailable``...) whose message is shown to the analyst.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

Row = dict[str, Any]
Result = Row | Iterable[Row] | None


class Cancelled(Exception):
    """Raised inside a handler when the analyst cancelled the command."""


class CommandEnded(Exception):
    """Raised by a handler that ends other than ``completed`` but has a result to keep (run: a non-zero
    exit, -timeout, a cancel, with the output so far). ``status`` is a Done status."""

    def __init__(self, status: str, code: str, message: str, result: Row) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.result = result


@dataclass
class CommandContext:
    cwd: str = "/"
    # Collector root: another file-system root (a mounted image); "/" is the live system.
    root: str = "/"
    fileinfo_hash_max_bytes: int = 10 * 1024**3
    getfile_max_bytes: int = 3 * 1024**3
    getfile_limit_name: str = "getfile_max_bytes"  # or the device policy, when it caps lower
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # Set by the runner: getfile's uploader (agent/upload.py, typed loosely like ``files``) and a way to
    # report an event row at once.
    upload: Any = None
    report: Callable[[Row], None] | None = None
    # Set by the runner for putfile and run: the envelope's library file, and the agent's working folder
    # (agent/workfolder.py; typed loosely so this module stays free of the agent's I/O).
    library: dict[str, Any] = field(default_factory=dict)
    files: Any = None
    # Who asked, in which session and command: from the signed envelope (remediation records keep them).
    command_id: str = ""
    session_id: str = ""
    requested_by: str = ""
    # The envelope's timeout: a handler whose own engine needs a deadline (analyze's YARA) stays within it.
    timeout_s: float = 1800.0
    # The agent's state directory (0700): the quarantine and the analysis cache live inside it.
    state_dir: Path | None = None

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def resolve_path(self, text: str | None) -> bytes:
        """Turn a path as typed (escaped form, SPEC §5) into an absolute byte path.

        Relative paths resolve against the session's working directory. ``..``
        components are folded lexically, the way a shell's ``cd`` shows them.
        """
        cwd = unescape_to_bytes(self.cwd)
        if text is None or text == "":
            return cwd
        raw = unescape_to_bytes(os.path.expanduser(text) if text.startswith("~") else text)
        joined = raw if raw.startswith(b"/") else os.path.join(cwd, raw)
        normal = os.path.normpath(joined)
        if normal.startswith(b"//"):
            normal = b"/" + normal.lstrip(b"/")
        return normal

    @staticmethod
    def show(path: bytes) -> str:
        """The text form of a byte path for output."""
        return escape_bytes(path)


Handler = Callable[[CommandContext, dict[str, Any]], Result]

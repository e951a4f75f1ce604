"""Running one script as a process group: argv without a shell, live output, timeout and cancel (SPEC §5 run).

- The script is started through its interpreter (by extension, else its ``#!``
  line) with the parameters as its argument vector: no shell, so no character
  is special.
- It runs in a new session (its own process group). A timeout, a cancel, and
  the script's own end all finish with the whole group killed: SIGTERM, up to
  ``KILL_GRACE_S`` to exit, then SIGKILL. A child that made itself a new session
  (``setsid``) on purpose is beyond the group; nothing else is.
- The environment is minimal (``MINIMAL_ENV_KEYS``); stdin is /dev/null.
- Output streams to ``report`` as rows ``{"stream": "stdout"|"stderr", "text": ...}``
  every ``FLUSH_S`` or ``FLUSH_BYTES``; text is the reversible escaped form
  (protocol/names.py), cut only where escaping stays exact, so the rows of one
  stream joined and unescaped are the script's bytes exactly.
- The result keeps each stream whole up to what fits in one protocol frame
  (``RESULT_JSON_MAX_BYTES`` for both); beyond it the result keeps the start and
  says "truncated: N of M bytes" (the live rows carried everything).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.protocol.errors import CommandFailed, NotAvailable
from liveresponse.protocol.names import escape_output, unescape_to_bytes

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MINIMAL_ENV_KEYS = ("PATH", "HOME", "LANG", "USER", "LOGNAME", "PWD")
FLUSH_S = 0.1
FLUSH_BYTES = 256 * 1024
READ_BYTES = 64 * 1024
KILL_GRACE_S = 2.0
DRAIN_S = 1.0  # after the script exits, how long its leftovers may keep the pipes open
RESULT_JSON_MAX_BYTES = 3 * 1024 * 1024  # stdout + stderr in the Done frame (MAX_FRAME_BYTES is 4 MiB)
INTERPRETERS = {".sh": "bash", ".py": "python3", ".ps1": "pwsh"}


def _which(program: str) -> str | None:
    return shutil.which(program, path=MINIMAL_PATH) or shutil.which(program)


def interpreter_for(script: Path, name: str) -> list[str]:
    """The interpreter command for a script: by extension, else by its ``#!`` line."""
    suffix = Path(name).suffix.lower()
    program = INTERPRETERS.get(suffix)
    if program is not None:
        found = _which(program)
        if found is None:
            what = "PowerShell (pwsh)" if program == "pwsh" else program
            raise NotAvailable(f"{name} needs {what}, which is not installed on this device")
        return [found]
    with open(script, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].strip().decode("utf-8", "replace")
        parts = line.split(None, 1)  # like the kernel: the interpreter and at most one argument
        if parts and os.path.isabs(parts[0]) and os.access(parts[0], os.X_OK):
            return parts
        raise NotAvailable(f"{name}: its #! interpreter {line!r} is not an executable on this device")
    raise CommandFailed(
        f"cannot tell how to run {name}: no known extension (.sh bash, .py python3, .ps1 pwsh) and no #! line"
    )


def minimal_env(cwd: str) -> dict[str, str]:
    try:
        entry = pwd.getpwuid(os.geteuid())
        home, user = entry.pw_dir, entry.pw_name
    except KeyError:
        home, user = "/", str(os.geteuid())
    return {"PATH": MINIMAL_PATH, "HOME": home, "LANG": "C.UTF-8", "USER": user, "LOGNAME": user, "PWD": cwd}


def safe_cut(buf: bytes | bytearray, final: bool) -> int:
    """How much of ``buf`` can be escaped now without changing the meaning of what follows."""
    n = len(buf)
    if final:
        return n
    cut = n
    for back in range(1, min(4, n) + 1):  # an unfinished UTF-8 sequence at the end waits for its rest
        byte = buf[n - back]
        if byte & 0xC0 == 0x80:
            continue
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                cut = n - back
        break
    backslash = bytes(buf).rfind(b"\\", max(0, cut - 3), cut)  # "\x4" + "1" must not be cut apart
    return backslash if backslash != -1 else cut


def _fit(text: str, max_json_bytes: int) -> str:
    """The longest start of ``text`` whose JSON form fits ``max_json_bytes``."""
    while text and len(json.dumps(text, ensure_ascii=False).encode()) > max_json_bytes:
        text = text[: max(0, len(text) * 9 // 10 - 16)]
    return text


@dataclass
class _Stream:
    name: str
    kept: bytearray = field(default_factory=bytearray)
    pending: bytearray = field(default_factory=bytearray)
    total: int = 0
    eof: bool = False


@dataclass
class ScriptOutcome:
    ended: str  # exited | timed_out | cancelled
    exit_code: int | None
    duration: float
    pid: int
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: str | None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait_s is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait_s)


def run_process(
    argv: list[str],
    cwd: bytes,
    env: dict[str, str],
    timeout_s: float | None,
    cancel: threading.Event,
    report: Callable[[dict[str, Any]], None] | None,
    keep_bytes: int = RESULT_JSON_MAX_BYTES,
) -> ScriptOutcome:
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): _Stream("stdout"), proc.stderr.fileno(): _Stream("stderr")}
    selector = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    ended = "exited"
    exited_at: float | None = None
    last_flush = time.monotonic()

    def flush(final: bool) -> None:
        nonlocal last_flush
        last_flush = time.monotonic()
        for stream in streams.values():
            cut = safe_cut(stream.pending, final)
            if cut == 0:
                continue
            text = escape_output(bytes(stream.pending[:cut]))
            del stream.pending[:cut]
            if report is not None:
                report({"stream": stream.name, "text": text})

    try:
        while not all(s.eof for s in streams.values()):
            for key, _ in selector.select(timeout=0.05):
                fd = int(key.fd)
                stream = streams[fd]
                data = os.read(fd, READ_BYTES)
                if not data:
                    stream.eof = True
                    selector.unregister(fd)
                    continue
                stream.total += len(data)
                room = keep_bytes - len(stream.kept)
                if room > 0:
                    stream.kept += data[:room]
                stream.pending += data
            now = time.monotonic()
            if now - last_flush >= FLUSH_S or any(len(s.pending) >= FLUSH_BYTES for s in streams.values()):
                flush(final=False)
            if ended == "exited" and exited_at is None:
                if cancel.is_set():
                    ended = "cancelled"
                elif timeout_s is not None and now - started > timeout_s:
                    ended = "timed_out"
                if ended != "exited":
                    _kill_group(proc)
                    exited_at = time.monotonic()
                elif proc.poll() is not None:
                    exited_at = now
            if exited_at is not None and time.monotonic() - exited_at > DRAIN_S:
                break  # leftovers (or a child in its own session) still hold the pipes: stop reading
    finally:
        _kill_group(proc)  # whatever the script left running in its group goes with it
        exit_code = proc.wait()
        flush(final=True)
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    stdout, stderr = list(streams.values())
    # stderr first, to half the frame budget; stdout gets the rest.
    stderr_text = _fit(escape_output(bytes(stderr.kept)), keep_bytes // 2)
    stdout_text = _fit(escape_output(bytes(stdout.kept)), keep_bytes - len(json.dumps(stderr_text).encode()))
    notes = []
    for stream, text in ((stdout, stdout_text), (stderr, stderr_text)):
        kept = len(unescape_to_bytes(text))
        if kept < stream.total:
            notes.append(f"{stream.name} truncated: {kept} of {stream.total} bytes kept (the live output had all)")
    return ScriptOutcome(
        ended=ended,
        exit_code=None if ended != "exited" else exit_code,
        duration=round(time.monotonic() - started, 6),
        pid=proc.pid,
        stdout=stdout_text,
        stderr=stderr_text,
        stdout_bytes=stdout.total,
        stderr_bytes=stderr.total,
        truncated="; ".join(notes) or None,
    )

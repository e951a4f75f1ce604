"""How the console shows ``run``: the script's own output, live, byte for byte (SPEC §5).

The agent streams rows ``{"stream": "stdout"|"stderr", "text": ...}`` (text in the
reversible escaped form, protocol/names.py). In table mode without redirection
they are written as they arrive, stdout to stdout and stderr to stderr, as the
bytes the script wrote. With ``> FILE``/``>> FILE`` the file receives exactly the
script's stdout bytes (stderr still goes to the console's stderr). With
``-output json`` the result object (exit_code, stdout, stderr, duration...) is
rendered as for any command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from liveresponse.protocol.names import unescape_to_bytes


def _write(stream: TextIO, text: str) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
    else:
        stream.flush()
        buffer.write(unescape_to_bytes(text))
        buffer.flush()
    stream.flush()


def shows_live(fmt: str, redirect: Any, background: bool) -> bool:
    return fmt == "table" and redirect is None and not background


def write_rows(rows: list[dict[str, Any]], out: TextIO, err: TextIO) -> None:
    for row in rows:
        _write(err if row.get("stream") == "stderr" else out, str(row.get("text", "")))


def _stdout_bytes(rows: list[dict[str, Any]], result: dict[str, Any] | None) -> bytes:
    if rows:
        return b"".join(unescape_to_bytes(str(r.get("text", ""))) for r in rows if r.get("stream") == "stdout")
    return unescape_to_bytes(str((result or {}).get("stdout") or ""))


def finish(
    rows: list[dict[str, Any]],
    printed: int,
    result: dict[str, Any] | None,
    fmt: str,
    redirect: Any,
    out: TextIO,
    err: TextIO,
) -> str | None:
    """Show what was not shown live. Returns the file written, if any; JSON is left to the caller."""
    if fmt == "json":
        return None
    if redirect is None:
        if printed < len(rows):
            write_rows(rows[printed:], out, err)
        elif not rows and result is not None:
            write_rows(
                [
                    {"stream": "stdout", "text": result.get("stdout") or ""},
                    {"stream": "stderr", "text": result.get("stderr") or ""},
                ],
                out,
                err,
            )
        return None
    target = Path(redirect.path).expanduser()
    with open(target, "ab" if redirect.mode == "append" else "wb") as fh:
        fh.write(_stdout_bytes(rows, result))
    write_rows([r for r in rows if r.get("stream") == "stderr"], out, err)
    return str(target)

"""Reversible text form of byte strings that are not valid UTF-8 (SPEC §5).

File names and command lines on Linux are bytes. We show them as text: valid
UTF-8 passes unchanged; every byte that is not part of valid UTF-8, and every
control character (0x00-0x1f, 0x7f: a newline in a name, an escape sequence that
would drive the analyst's terminal), is written ``\\xHH`` (two lower-case hex
digits), so every name shown can be typed back on one console line. A literal
backslash that happens to be followed by ``x`` and two hex digits is itself
written ``\\x5c`` so that the mapping stays reversible. Decoding turns every ``\\xHH`` back into byte HH and
leaves every other backslash alone, so Windows-style paths need no escaping.
"""

from __future__ import annotations

import posixpath
import re

_HEX = "0123456789abcdefABCDEF"
_ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")
# What escape_bytes rewrites: bytes that are not UTF-8, control characters, and backslashes (some of them).
_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f\udc80-\udcff]")
_NEEDS_ESCAPE_OUTPUT = re.compile("[\\\\\udc80-\udcff]")


def _is_escape_at(text: str, i: int) -> bool:
    return i + 3 < len(text) and text[i] == "\\" and text[i + 1] == "x" and text[i + 2] in _HEX and text[i + 3] in _HEX


def escape_bytes(raw: bytes) -> str:
    """Return the reversible text form of ``raw`` (a name, a command line)."""
    return _escape(raw, controls=True)


def escape_output(raw: bytes) -> str:
    """The reversible text form of a program's output: as escape_bytes, but lines stay lines (control
    characters pass; the console writes a script's output bytes as they were)."""
    return _escape(raw, controls=False)


def _escape(raw: bytes, controls: bool) -> str:
    decoded = raw.decode("utf-8", "surrogateescape")
    if not (_NEEDS_ESCAPE if controls else _NEEDS_ESCAPE_OUTPUT).search(decoded):
        return decoded
    out: list[str] = []
    for i, ch in enumerate(decoded):
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif controls and (ch < " " or ch == "\x7f"):
            out.append(f"\\x{ord(ch):02x}")
        elif ch == "\\" and _is_escape_at(decoded, i):
            out.append("\\x5c")
        else:
            out.append(ch)
    return "".join(out)


def escape_text(text: str) -> str:
    """Escape a ``str`` that came from ``os.fsdecode`` (surrogateescape)."""
    return escape_bytes(text.encode("utf-8", "surrogateescape"))


def unescape_to_bytes(text: str) -> bytes:
    """Inverse of :func:`escape_bytes`."""
    if "\\x" not in text:
        return text.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    pos = 0
    for match in _ESCAPE_RE.finditer(text):
        parts.append(text[pos : match.start()].encode("utf-8", "surrogateescape"))
        parts.append(bytes([int(match.group(1), 16)]))
        pos = match.end()
    parts.append(text[pos:].encode("utf-8", "surrogateescape"))
    return b"".join(parts)


def canonical(text: str) -> str:
    """The one shown form of a typed name: ``\\x41`` and ``A`` name the same file."""
    return escape_bytes(unescape_to_bytes(text))


def resolve_lexically(cwd: str, path: str) -> str:
    """``path`` against ``cwd`` with ``..`` folded, on the shown (escaped) form — as the agent resolves it."""
    joined = path if path.startswith("/") else posixpath.join(cwd, path)
    normal = posixpath.normpath(joined)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal

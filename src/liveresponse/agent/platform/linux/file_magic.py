"""A short description of a file's content from its first bytes, like file(1) but small.

We recognise the formats an incident responder meets most (executables,
scripts, archives, documents, images) from their magic numbers, so the agent
needs no libmagic. Anything else is ``text`` or ``data``.
"""

from __future__ import annotations

# Enough for every signature below (tar's "ustar" sits at offset 257).
MAGIC_PREFIX_BYTES = 512

_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x1f\x8b", "gzip compressed data"),
    (0, b"PK\x03\x04", "Zip archive data"),
    (0, b"PK\x05\x06", "Zip archive data (empty)"),
    (0, b"%PDF-", "PDF document"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG image data"),
    (0, b"\xff\xd8\xff", "JPEG image data"),
    (0, b"GIF87a", "GIF image data"),
    (0, b"GIF89a", "GIF image data"),
    (0, b"BZh", "bzip2 compressed data"),
    (0, b"\xfd7zXZ\x00", "XZ compressed data"),
    (0, b"\x28\xb5\x2f\xfd", "Zstandard compressed data"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-zip archive data"),
    (0, b"Rar!\x1a\x07", "RAR archive data"),
    (0, b"\xed\xab\xee\xdb", "RPM package"),
    (0, b"!<arch>\ndebian", "Debian binary package"),
    (0, b"!<arch>\n", "ar archive"),
    (0, b"SQLite format 3\x00", "SQLite 3.x database"),
    (0, b"LUKS\xba\xbe", "LUKS encrypted volume"),
    (0, b"\xca\xfe\xba\xbe", "Java class or Mach-O universal binary"),
    (0, b"\xcf\xfa\xed\xfe", "Mach-O 64-bit executable"),
    (0, b"\xce\xfa\xed\xfe", "Mach-O 32-bit executable"),
    (0, b"MZ", "PE/MS-DOS executable"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Microsoft OLE2 compound document"),
    (0, b"-----BEGIN ", "PEM data"),
    (0, b"OggS", "Ogg data"),
    (0, b"RIFF", "RIFF data"),
    (257, b"ustar", "POSIX tar archive"),
)

_ELF_TYPES = {1: "relocatable", 2: "executable", 3: "shared object", 4: "core file"}
_CONTROL_BYTES_ALLOWED_IN_TEXT = frozenset(b"\t\n\r\f\b\x1b")


def describe(prefix: bytes) -> str:
    """Describe content that starts with ``prefix`` (up to :data:`MAGIC_PREFIX_BYTES`)."""
    if not prefix:
        return "empty"
    if prefix.startswith(b"\x7fELF"):
        return _describe_elf(prefix)
    if prefix.startswith(b"#!"):
        return _describe_script(prefix)
    for offset, signature, description in _SIGNATURES:
        if prefix.startswith(signature, offset):
            return description
    return _describe_text_or_data(prefix)


def _describe_elf(prefix: bytes) -> str:
    bits = {1: "32-bit", 2: "64-bit"}.get(prefix[4] if len(prefix) > 4 else 0, "")
    order = {1: "LSB", 2: "MSB"}.get(prefix[5] if len(prefix) > 5 else 0, "")
    kind = ""
    if len(prefix) >= 18 and order:
        kind = _ELF_TYPES.get(int.from_bytes(prefix[16:18], "little" if order == "LSB" else "big"), "")
    return " ".join(part for part in ("ELF", bits, order, kind) if part)


def _describe_script(prefix: bytes) -> str:
    line = prefix[2:].split(b"\n", 1)[0].strip()
    words = line.split()
    if not words:
        return "script text"
    interpreter = words[0].decode("utf-8", "replace")
    # "#!/usr/bin/env python3" names the real interpreter in its second word.
    if interpreter.endswith("/env") and len(words) > 1:
        interpreter = words[1].decode("utf-8", "replace")
    return f"script text executable ({interpreter})"


def _describe_text_or_data(prefix: bytes) -> str:
    if b"\x00" in prefix:
        return "data"
    if any(byte < 0x20 and byte not in _CONTROL_BYTES_ALLOWED_IN_TEXT for byte in prefix):
        return "data"
    if prefix.isascii():
        return "ASCII text"
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as error:
        # The prefix may end in the middle of a multi-byte character.
        if error.start < len(prefix) - 3:
            return "data"
    return "UTF-8 text"

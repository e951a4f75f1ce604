"""OpenSSH ``authorized_keys`` lines (sshd(8) "AUTHORIZED_KEYS FILE FORMAT").

A line is ``[options] keytype base64-blob [comment]``. Options are
comma-separated; a value is double-quoted and may hold spaces, commas and
``\\"``. The fingerprint is what ``ssh-keygen -lf`` prints:
``SHA256:`` + unpadded base64 of sha256(blob); the bit size is read from the
blob as ssh-keygen does (RSA/DSA modulus length, the curve for ECDSA, 256 for
Ed25519). A line sshd would reject is still reported, with ``problem`` set:
an attacker's malformed key is worth seeing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

PLAIN_KEY_TYPES = (
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_FIXED_BITS = {
    "ssh-ed25519": 256,
    "sk-ssh-ed25519@openssh.com": 256,
    "ecdsa-sha2-nistp256": 256,
    "ecdsa-sha2-nistp384": 384,
    "ecdsa-sha2-nistp521": 521,
    "sk-ecdsa-sha2-nistp256@openssh.com": 256,
}


def is_key_type(word: str) -> bool:
    base = word.replace("-cert-v01@openssh.com", "") if word.endswith("-cert-v01@openssh.com") else word
    if base.startswith("sk-") and not base.endswith("@openssh.com"):
        base += "@openssh.com"  # certificate names drop the suffix: sk-ssh-ed25519-cert-v01@openssh.com
    return base in PLAIN_KEY_TYPES


@dataclass(frozen=True)
class AuthorizedKey:
    options: tuple[str, ...]  # as written, e.g. 'command="/bin/backup --x"'
    option_values: tuple[tuple[str, str | None], ...]  # (name lower-cased, unquoted value)
    key_type: str | None
    blob: str | None  # base64 as written
    comment: str | None
    fingerprint: str | None
    bits: int | None
    problem: str | None

    def option(self, name: str) -> str | None:
        return next((value for key, value in self.option_values if key == name), None)


def fingerprint_of(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _strings(blob: bytes, count: int) -> list[bytes]:
    """The first ``count`` SSH wire strings (uint32 length + bytes) of a blob."""
    found: list[bytes] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(blob):
            raise ValueError("truncated key blob")
        length = int.from_bytes(blob[offset : offset + 4], "big")
        offset += 4
        if offset + length > len(blob):
            raise ValueError("truncated key blob")
        found.append(blob[offset : offset + length])
        offset += length
    return found


def bits_of(key_type: str, blob: bytes) -> int | None:
    if key_type in _FIXED_BITS:
        return _FIXED_BITS[key_type]
    if key_type == "ssh-rsa":
        return int.from_bytes(_strings(blob, 3)[2], "big").bit_length()  # type, e, n
    if key_type == "ssh-dss":
        return int.from_bytes(_strings(blob, 2)[1], "big").bit_length()  # type, p
    return None


def _split_options(text: str) -> tuple[str, str]:
    """(options text, rest of the line): options end at the first unquoted blank."""
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quoted and index + 1 < len(text):
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return text[:index], text[index:].strip()
        index += 1
    return text, ""


def _option_list(text: str) -> list[str]:
    options: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quoted and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    if current:
        options.append("".join(current))
    return options


def _option_value(option: str) -> tuple[str, str | None]:
    name, sep, value = option.partition("=")
    if not sep:
        return name.lower(), None
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1].replace('\\"', '"')
    return name.lower(), value


def parse_authorized_key(line: str) -> AuthorizedKey | None:
    """Parse one line; None for blank lines and comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    options: list[str] = []
    if not is_key_type(text.split(None, 1)[0]):
        options_text, text = _split_options(text)
        options = _option_list(options_text)
    values = tuple(_option_value(option) for option in options)
    words = text.split(None, 2)
    if not words or not is_key_type(words[0]):
        return AuthorizedKey(tuple(options), values, None, None, None, None, None, "no known key type")
    key_type = words[0]
    if len(words) < 2:
        return AuthorizedKey(tuple(options), values, key_type, None, None, None, None, "no key data")
    comment = words[2] if len(words) > 2 else None
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        return AuthorizedKey(tuple(options), values, key_type, words[1], comment, None, None, "key data is not base64")
    problem = None
    bits = None
    try:
        embedded = _strings(blob, 1)[0].decode("ascii", "replace")
        if embedded != key_type:
            problem = f"key data is of type {embedded}, the line says {key_type}"
        bits = bits_of(key_type, blob)
    except ValueError as error:
        problem = str(error)
    return AuthorizedKey(tuple(options), values, key_type, words[1], comment, fingerprint_of(blob), bits, problem)

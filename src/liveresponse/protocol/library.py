"""Rules for the tenant library and script signing, shared by server, agent and console (SPEC §5, §7).

Pure: no I/O. The same rules run on the server (upload, run, putfile) and again
on the device, which trusts nothing but the server-signed envelope.

Names: letters, digits, ``-``, ``_`` and ``.`` only; ``.`` and ``..`` are
refused; at most 255 characters. So a name can never carry a slash or a
traversal, on any path.

Signatures (decision, docs/architecture.md DR-13): a detached Ed25519 signature
over the statement ``liveresponse-script-signature-v1\\nsha256:<hex>\\n``. Signing
the file's sha256 rather than its bytes keeps memory flat on every side (Ed25519
cannot sign a stream); the device hashes the bytes it received and checks the
signature over that hash against the tenant's publisher keys, which reach it
inside the server-signed envelope.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from liveresponse.protocol.errors import LiveResponseError

NAME_MAX_CHARS = 255
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
SIGNATURE_CONTEXT = "liveresponse-script-signature-v1"


class LibraryNameError(LiveResponseError):
    code = "bad_library_name"
    http_status = 400


class ScriptNotTrusted(LiveResponseError):
    """A script without a valid signature from a trusted publisher; ``rule`` names the rule applied."""

    code = "script_not_trusted"
    http_status = 403


class PublisherKeyError(LiveResponseError):
    code = "bad_publisher_key"
    http_status = 400


def check_name(name: str) -> str:
    """Return ``name`` when it is a valid library name, else raise LibraryNameError saying why."""
    if not name:
        raise LibraryNameError("a library file needs a name")
    if len(name) > NAME_MAX_CHARS:
        raise LibraryNameError(f"library name is {len(name)} characters long; the limit is {NAME_MAX_CHARS}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise LibraryNameError(
            f"library name {name!r} is refused: no slash, backslash or traversal; use letters, digits, -, _ and . only"
        )
    if not _NAME_RE.fullmatch(name):
        raise LibraryNameError(f"library name {name!r} is refused: use letters, digits, -, _ and . only")
    return name


def signature_statement(sha256: str) -> bytes:
    """What a publisher signs for a file with this sha256 (hex)."""
    return f"{SIGNATURE_CONTEXT}\nsha256:{sha256.lower()}\n".encode()


def sign_digest(key: Ed25519PrivateKey, sha256: str) -> str:
    """A detached signature (base64) over a file's sha256."""
    return base64.b64encode(key.sign(signature_statement(sha256))).decode("ascii")


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form publisher keys travel and are stored in: base64 of the 32 raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_fingerprint(public_key_b64: str) -> str:
    return "sha256:" + hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:32]


def parse_public_key(text: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo), an OpenSSH line or raw base64."""
    stripped = text.strip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            key: Any = serialization.load_pem_public_key(stripped)
        elif stripped.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(stripped)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(stripped, validate=True))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PublisherKeyError(f"not an Ed25519 public key (PEM, OpenSSH or base64): {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublisherKeyError("publisher keys must be Ed25519 keys")
    return key


def parse_private_key(text: bytes) -> Ed25519PrivateKey:
    """An Ed25519 signing key from PEM PKCS8 (``lr library keygen``) or an OpenSSH private key."""
    try:
        if b"OPENSSH PRIVATE KEY" in text:
            key: Any = serialization.load_ssh_private_key(text, password=None)
        else:
            key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PublisherKeyError(f"not an unencrypted Ed25519 private key (PEM PKCS8 or OpenSSH): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PublisherKeyError("signing keys must be Ed25519 keys")
    return key


def matching_publisher(sha256: str, signature_b64: str, publishers: list[dict[str, str]]) -> str | None:
    """The name of the first publisher whose key verifies ``signature_b64`` over ``sha256``, else None."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return None
    statement = signature_statement(sha256)
    for publisher in publishers:
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(publisher["public_key"]))
            key.verify(signature, statement)
        except (InvalidSignature, ValueError, KeyError):
            continue
        return publisher["name"]
    return None


def check_script_trust(
    name: str,
    sha256: str,
    signature_b64: str | None,
    publishers: list[dict[str, str]],
    unsigned_allowed: bool,
    where: str,
) -> str | None:
    """Decide whether a script may run; returns the publisher name (None when unsigned and allowed).

    ``where`` ("on the server", "on the device") goes into the refusal so the
    analyst knows which side applied which rule.
    """
    if signature_b64 is None:
        if unsigned_allowed:
            return None
        raise ScriptNotTrusted(
            f"{name} is not signed and unsigned_scripts_allowed is false (rule: scripts must carry a valid "
            f"signature from a trusted publisher of the tenant; checked {where})",
            rule="unsigned_scripts_allowed",
        )
    publisher = matching_publisher(sha256, signature_b64, publishers)
    if publisher is None:
        raise ScriptNotTrusted(
            f"the signature of {name} does not verify for sha256 {sha256} against any of the tenant's "
            f"{len(publishers)} trusted publisher key(s) (rule: valid signature from a trusted publisher; "
            f"checked {where}): the script was changed after signing, or its publisher is not trusted",
            rule="signature",
        )
    return publisher

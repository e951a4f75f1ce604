"""Signed command envelopes and the agent's checks (SPEC §11).

The server signs every command (and every cancel) for one device and one
session, with an issue time and an expiry. The agent verifies, in this order:
signature (against the server's command key learned at enrollment), target
device, freshness (not expired; not issued in the future beyond the allowed
clock skew) and replay (an envelope id seen before is refused). Any failure is
an :class:`EnvelopeRejected` with its reason; the envelope is not acted on.

The signature covers the envelope's JSON text byte for byte, so nothing is
re-serialised before verification.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from liveresponse.protocol.errors import EnvelopeRejected
from liveresponse.protocol.messages import Signed

ENVELOPE_TTL_S = 60.0  # an envelope must reach the agent within this window
CLOCK_SKEW_S = 30.0


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    kind: Literal["run", "cancel"]
    envelope_id: str  # unique per envelope; the replay key
    command_id: str
    device_id: str
    session_id: str
    issued_at: float
    expires_at: float
    command: str = ""
    args: dict[str, Any] = {}
    cwd: str = "/"
    timeout_s: float = 600.0
    limits: dict[str, int] = {}
    # A library file the command uses (putfile, run): name, sha256, size, one-time fetch ticket, and for
    # scripts the signature, the tenant's publisher keys and whether unsigned scripts are allowed.
    library: dict[str, Any] = {}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def sign(envelope: Envelope, key: Ed25519PrivateKey) -> Signed:
    text = envelope.model_dump_json()
    return Signed(envelope=text, signature=b64(key.sign(text.encode())))


class ReplayGuard:
    """Remembers envelope ids until they expire. ``seen`` may be pre-loaded from disk."""

    def __init__(self, seen: dict[str, float] | None = None) -> None:
        self.seen: dict[str, float] = dict(seen or {})

    def check_and_remember(self, envelope_id: str, expires_at: float, now: float) -> None:
        for key in [k for k, exp in self.seen.items() if exp < now - CLOCK_SKEW_S]:
            del self.seen[key]
        if envelope_id in self.seen:
            raise EnvelopeRejected("replay", f"envelope {envelope_id} was already received: refused as a replay")
        self.seen[envelope_id] = expires_at


def verify(
    signed: Signed,
    key: Ed25519PublicKey,
    device_id: str,
    guard: ReplayGuard,
    clock: Callable[[], float],
) -> Envelope:
    try:
        signature = unb64(signed.signature)
        key.verify(signature, signed.envelope.encode())
    except (InvalidSignature, ValueError):
        raise EnvelopeRejected("bad_signature", "command signature is not valid for this server's key") from None
    try:
        envelope = Envelope.model_validate(json.loads(signed.envelope))
    except (ValueError, ValidationError):
        raise EnvelopeRejected("malformed", "signed envelope is malformed") from None
    if envelope.device_id != device_id:
        raise EnvelopeRejected(
            "wrong_device", f"command is addressed to device {envelope.device_id}, this is {device_id}"
        )
    now = clock()
    if envelope.expires_at < now:
        raise EnvelopeRejected("expired", f"command expired {now - envelope.expires_at:.1f} s ago")
    if envelope.issued_at > now + CLOCK_SKEW_S:
        raise EnvelopeRejected("not_yet_valid", "command is issued in the future: check the clocks")
    guard.check_and_remember(envelope.envelope_id, envelope.expires_at, now)
    return envelope

"""Signed command envelopes (SPEC §11): protocol/signing.py. Tier 1, pure, injected clock."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liveresponse.protocol.errors import EnvelopeRejected
from liveresponse.protocol.messages import Signed
from liveresponse.protocol.signing import (
    CLOCK_SKEW_S,
    ENVELOPE_TTL_S,
    Envelope,
    ReplayGuard,
    b64,
    sign,
    unb64,
    verify,
)

T0 = 1_700_000_000.0
DEVICE = "dev_0123456789abcdef"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def envelope(**changes: object) -> Envelope:
    values: dict[str, object] = {
        "kind": "run",
        "envelope_id": "env_1",
        "command_id": "cmd_1",
        "device_id": DEVICE,
        "session_id": "ses_1",
        "issued_at": T0,
        "expires_at": T0 + ENVELOPE_TTL_S,
        "command": "dir",
        "args": {"path": "/etc"},
    }
    values.update(changes)
    return Envelope.model_validate(values)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def reason_of(signed: Signed, key: Ed25519PrivateKey, guard: ReplayGuard | None = None, now: float = T0) -> str:
    with pytest.raises(EnvelopeRejected) as info:
        verify(signed, key.public_key(), DEVICE, guard or ReplayGuard(), Clock(now))
    assert info.value.code == "command_rejected"
    assert info.value.to_wire()["reason"] == info.value.reason
    return info.value.reason


def test_sign_and_verify(key: Ed25519PrivateKey) -> None:
    env = envelope()
    signed = sign(env, key)
    assert signed.envelope == env.model_dump_json()
    assert verify(signed, key.public_key(), DEVICE, ReplayGuard(), Clock()) == env


@pytest.mark.parametrize(
    ("old", "new"),
    [('"dir"', '"cd "'), ('"/etc"', '"/etd"'), ('"ses_1"', '"ses_2"'), ('"run"', '"cancel"')],
)
def test_tampered_text_is_a_bad_signature(key: Ed25519PrivateKey, old: str, new: str) -> None:
    signed = sign(envelope(), key)
    assert old in signed.envelope
    tampered = signed.model_copy(update={"envelope": signed.envelope.replace(old, new, 1)})
    assert tampered.envelope != signed.envelope
    assert reason_of(tampered, key) == "bad_signature"


def test_reserialised_envelope_is_a_bad_signature(key: Ed25519PrivateKey) -> None:
    # the signature covers the text byte for byte: the same JSON with other spacing is refused
    signed = sign(envelope(), key)
    spaced = json.dumps(json.loads(signed.envelope), indent=1)
    assert reason_of(Signed(envelope=spaced, signature=signed.signature), key) == "bad_signature"


def test_signature_of_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    signed = sign(envelope(), Ed25519PrivateKey.generate())
    assert reason_of(signed, key) == "bad_signature"


@pytest.mark.parametrize("signature", ["", "not base64!", b64(b"short"), "A" * 88])
def test_garbage_signature_is_refused(key: Ed25519PrivateKey, signature: str) -> None:
    signed = sign(envelope(), key)
    assert reason_of(Signed(envelope=signed.envelope, signature=signature), key) == "bad_signature"


def test_signed_malformed_envelope_is_refused(key: Ed25519PrivateKey) -> None:
    text = '{"v": 1, "kind": "rm -rf"}'
    signed = Signed(envelope=text, signature=b64(key.sign(text.encode())))
    assert reason_of(signed, key) == "malformed"


def test_wrong_device(key: Ed25519PrivateKey) -> None:
    signed = sign(envelope(device_id="dev_other"), key)
    with pytest.raises(EnvelopeRejected) as info:
        verify(signed, key.public_key(), DEVICE, ReplayGuard(), Clock())
    assert info.value.reason == "wrong_device"
    assert info.value.message == f"command is addressed to device dev_other, this is {DEVICE}"


def test_expired(key: Ed25519PrivateKey) -> None:
    signed = sign(envelope(), key)
    assert reason_of(signed, key, now=T0 + ENVELOPE_TTL_S + 0.5) == "expired"
    # exactly at the expiry it is still valid
    verify(signed, key.public_key(), DEVICE, ReplayGuard(), Clock(T0 + ENVELOPE_TTL_S))


def test_issued_in_the_future_beyond_the_skew(key: Ed25519PrivateKey) -> None:
    future = T0 + CLOCK_SKEW_S + 1
    signed = sign(envelope(issued_at=future, expires_at=future + ENVELOPE_TTL_S), key)
    assert reason_of(signed, key) == "not_yet_valid"


def test_issued_in_the_future_within_the_skew_is_accepted(key: Ed25519PrivateKey) -> None:
    soon = T0 + CLOCK_SKEW_S - 1
    env = envelope(issued_at=soon, expires_at=soon + ENVELOPE_TTL_S)
    assert verify(sign(env, key), key.public_key(), DEVICE, ReplayGuard(), Clock()) == env


def test_replay(key: Ed25519PrivateKey) -> None:
    guard = ReplayGuard()
    signed = sign(envelope(), key)
    verify(signed, key.public_key(), DEVICE, guard, Clock())
    with pytest.raises(EnvelopeRejected) as info:
        verify(signed, key.public_key(), DEVICE, guard, Clock(T0 + 1))
    assert info.value.reason == "replay"
    assert info.value.message == "envelope env_1 was already received: refused as a replay"


def test_replay_of_another_envelope_id_is_fine(key: Ed25519PrivateKey) -> None:
    guard = ReplayGuard()
    verify(sign(envelope(), key), key.public_key(), DEVICE, guard, Clock())
    verify(sign(envelope(envelope_id="env_2"), key), key.public_key(), DEVICE, guard, Clock())
    assert set(guard.seen) == {"env_1", "env_2"}


def test_a_rejected_envelope_is_not_remembered(key: Ed25519PrivateKey) -> None:
    guard = ReplayGuard()
    assert reason_of(sign(envelope(device_id="dev_other"), key), key, guard) == "wrong_device"
    assert guard.seen == {}


def test_replay_guard_forgets_ids_after_expiry() -> None:
    guard = ReplayGuard()
    guard.check_and_remember("env_1", T0 + 60, now=T0)
    with pytest.raises(EnvelopeRejected):
        guard.check_and_remember("env_1", T0 + 60, now=T0 + 60 + CLOCK_SKEW_S)  # still inside the skew
    guard.check_and_remember("env_2", T0 + 500, now=T0 + 61 + CLOCK_SKEW_S)
    assert set(guard.seen) == {"env_2"}
    guard.check_and_remember("env_1", T0 + 500, now=T0 + 61 + CLOCK_SKEW_S)
    assert set(guard.seen) == {"env_1", "env_2"}


def test_replay_guard_preloaded_from_disk(key: Ed25519PrivateKey) -> None:
    guard = ReplayGuard({"env_1": T0 + 60})
    assert reason_of(sign(envelope(), key), key, guard) == "replay"


def test_b64_round_trip() -> None:
    assert unb64(b64(b"\x00\xffabc")) == b"\x00\xffabc"
    with pytest.raises(ValueError):
        unb64("@@@")

"""Agent <-> server messages and their codec (SPEC §11): protocol/messages.py. Tier 1, pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveresponse.protocol.errors import FrameError
from liveresponse.protocol.messages import (
    MAX_FRAME_BYTES,
    Auth,
    Done,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Refused,
    Rows,
    Signed,
    Welcome,
    auth_payload,
    decode,
    encode,
)

EXAMPLES = [
    Hello(protocol_versions=[1, 2], challenge="Y2hhbGxlbmdl", server_time=1.5),
    Auth(
        device_id="dev_1",
        protocol_version=1,
        protocol_versions=[1],
        agent_version="0.1.0",
        hostname="host-é",
        os="linux",
        signature="c2ln",
    ),
    Welcome(protocol_version=1, heartbeat_s=20.0),
    Refused(code="protocol_version", message="server speaks 1, agent speaks 2"),
    Signed(envelope='{"v":1}', signature="c2ln"),
    Rows(command_id="cmd_1", rows=[{"name": "a", "size": 1, "nested": {"x": [1, None]}}, {}]),
    Done(command_id="cmd_1", status="completed", result={"cwd": "/"}),
    Done(command_id="cmd_2", status="failed", error={"code": "not_found", "message": "no such file"}),
    Done(command_id="cmd_3", status="timed_out"),
    Heartbeat(sent_at=12.25),
    HeartbeatAck(sent_at=12.25),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: f"{m.type}")
def test_round_trip(message: object) -> None:
    text = encode(message)  # type: ignore[arg-type]
    assert json.loads(text)["type"] == message.type  # type: ignore[attr-defined]
    decoded = decode(text)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decode(text.encode()) == message


def test_every_message_type_has_an_example() -> None:
    assert {m.type for m in EXAMPLES} == {
        "hello", "auth", "welcome", "refused", "signed", "rows", "done", "heartbeat", "heartbeat_ack",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "start"),
    [
        ("", "frame is not JSON"),
        ("{", "frame is not JSON"),
        (b"\xff\xfe", "frame is not JSON"),
        ("[]", "frame is not a JSON object"),
        ("42", "frame is not a JSON object"),
        ('"hello"', "frame is not a JSON object"),
        ("{}", "bad frame"),
        ('{"type": "nope"}', "bad frame"),
        ('{"type": "heartbeat"}', "bad frame: heartbeat.sent_at"),
        ('{"type": "heartbeat", "sent_at": 1, "extra": 2}', "bad frame: heartbeat.extra"),
        ('{"type": "done", "command_id": "c", "status": "exploded"}', "bad frame: done.status"),
        ('{"type": "rows", "command_id": "c", "rows": [1]}', "bad frame: rows.rows.0"),
    ],
)
def test_bad_frames(frame: str | bytes, start: str) -> None:
    with pytest.raises(FrameError) as info:
        decode(frame)
    assert info.value.message.startswith(start), info.value.message
    assert info.value.code == "bad_frame"


def test_oversized_frame_names_the_limit() -> None:
    frame = json.dumps({"type": "rows", "command_id": "c", "rows": [{"x": "a" * MAX_FRAME_BYTES}]})
    with pytest.raises(FrameError) as info:
        decode(frame)
    assert info.value.message == f"frame of {len(frame)} bytes is over the limit of {MAX_FRAME_BYTES} bytes"
    assert str(MAX_FRAME_BYTES) in info.value.message


def test_frame_at_the_limit_is_decoded() -> None:
    head = '{"type":"heartbeat","sent_at":1'
    frame = head + " " * (MAX_FRAME_BYTES - len(head) - 1) + "}"
    assert len(frame) == MAX_FRAME_BYTES
    assert decode(frame) == Heartbeat(sent_at=1.0)


def test_oversized_limit_counts_bytes_not_characters() -> None:
    # 'é' is two bytes in UTF-8: a text frame under the limit in characters may be over it in bytes
    value = "é" * (MAX_FRAME_BYTES // 2 + 10)
    frame = json.dumps({"type": "refused", "code": "x", "message": value}, ensure_ascii=False)
    assert len(frame) < MAX_FRAME_BYTES < len(frame.encode())
    with pytest.raises(FrameError) as info:
        decode(frame)
    assert str(MAX_FRAME_BYTES) in info.value.message


def test_auth_payload_binds_device_and_challenge() -> None:
    assert auth_payload("abc", "dev_1") == b"liveresponse-agent-auth\ndev_1\nabc"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
_frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "auth", "welcome", "refused", "signed", "rows", "done", "heartbeat"])},
    optional={
        "sent_at": _json_values,
        "command_id": _json_values,
        "rows": _json_values,
        "status": _json_values,
        "envelope": _json_values,
        "signature": _json_values,
        "code": _json_values,
        "message": _json_values,
    },
).map(json.dumps)


def _decode_total(frame: str | bytes) -> None:
    try:
        message = decode(frame)
    except FrameError as exc:
        assert exc.message
    else:
        assert message.type in {"hello", "auth", "welcome", "refused", "signed", "rows", "done", "heartbeat",
                                "heartbeat_ack"}  # fmt: skip


@given(st.text())
def test_decode_is_total_on_text(frame: str) -> None:
    _decode_total(frame)


@given(st.binary())
def test_decode_is_total_on_bytes(frame: bytes) -> None:
    _decode_total(frame)


@given(_json_values.map(json.dumps))
def test_decode_is_total_on_json(frame: str) -> None:
    _decode_total(frame)


@given(_frame_like)
def test_decode_is_total_on_frame_like_json(frame: str) -> None:
    _decode_total(frame)

"""Messages between agent and server, and their codec (SPEC §11).

Each WebSocket text frame is one JSON object with a ``type``. :func:`decode`
either returns one of the message classes below or raises :class:`FrameError`
(malformed JSON, unknown type, wrong fields, oversized frame): nothing else.

Handshake, server first::

    server -> agent   Hello(protocol_versions, challenge)
    agent  -> server  Auth(device_id, protocol_version, agent_version, signature)
    server -> agent   Welcome(...) | Refused(reason)

Then, any time::

    server -> agent   Signed(envelope, signature)        a command or a cancel (signing.py)
    agent  -> server  Rows(command_id, rows)             part of a listing, in order
    agent  -> server  Done(command_id, status, result, error)
    agent  -> server  Heartbeat(sent_at) ; server -> agent HeartbeatAck(sent_at)
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from liveresponse.protocol.errors import FrameError

MAX_FRAME_BYTES = 4 * 1024 * 1024  # the gateway and the agent both refuse larger frames
ROWS_BATCH_BYTES = 256 * 1024  # the agent flushes a Rows message at about this size


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Message):
    type: Literal["hello"] = "hello"
    protocol_versions: list[int]
    challenge: str  # base64, random per connection
    server_time: float


class Auth(_Message):
    type: Literal["auth"] = "auth"
    device_id: str
    protocol_version: int
    protocol_versions: list[int]
    agent_version: str
    hostname: str
    os: str
    signature: str  # base64 Ed25519 over auth_payload(challenge, device_id)


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    protocol_version: int
    heartbeat_s: float


class Refused(_Message):
    type: Literal["refused"] = "refused"
    code: str
    message: str


class Signed(_Message):
    """A signed envelope (signing.py): the JSON text exactly as signed, and its signature."""

    type: Literal["signed"] = "signed"
    envelope: str
    signature: str


class Rows(_Message):
    type: Literal["rows"] = "rows"
    command_id: str
    rows: list[dict[str, Any]]


class Done(_Message):
    """The end of a command. ``rows`` carries the last batch of a listing, saving a frame for small ones."""

    type: Literal["done"] = "done"
    command_id: str
    status: Literal["completed", "failed", "cancelled", "timed_out"]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []


class Heartbeat(_Message):
    type: Literal["heartbeat"] = "heartbeat"
    sent_at: float


class HeartbeatAck(_Message):
    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    sent_at: float


Message = Annotated[
    Hello | Auth | Welcome | Refused | Signed | Rows | Done | Heartbeat | HeartbeatAck,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


def auth_payload(challenge: str, device_id: str) -> bytes:
    """What the agent signs to prove possession of its device key."""
    return f"liveresponse-agent-auth\n{device_id}\n{challenge}".encode()


def encode(message: _Message) -> str:
    return message.model_dump_json()


def decode(frame: str | bytes) -> Message:
    size = len(frame)
    if isinstance(frame, str) and size * 4 > MAX_FRAME_BYTES:
        size = len(frame.encode("utf-8", "surrogatepass"))  # the limit is in bytes, not characters
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes is over the limit of {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError("frame is not a JSON object")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise FrameError(f"bad frame: {where}: {first.get('msg')}") from None

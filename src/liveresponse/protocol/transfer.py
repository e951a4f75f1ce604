"""File chunks from agent to server: binary WebSocket frames (SPEC §7).

    b"LRC1" | transfer id (16 bytes, UUID) | offset (8 bytes, big-endian) | data

Binary frames carry the bytes without JSON or base64; the JSON messages
(Rows, Done) carry what the transfer is about. A chunk is at most
CHUNK_BYTES of data, so a frame stays under MAX_FRAME_BYTES.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from liveresponse.protocol.errors import FrameError
from liveresponse.protocol.messages import MAX_FRAME_BYTES

MAGIC = b"LRC1"
_HEADER = struct.Struct(">4s16sQ")
HEADER_BYTES = _HEADER.size
CHUNK_BYTES = 1024 * 1024
assert CHUNK_BYTES + HEADER_BYTES <= MAX_FRAME_BYTES


@dataclass(frozen=True)
class Chunk:
    transfer_id: str  # uuid hex
    offset: int
    data: memoryview


def encode_chunk_header(transfer_id: str, offset: int) -> bytes:
    return _HEADER.pack(MAGIC, uuid.UUID(hex=transfer_id).bytes, offset)


def decode_chunk(frame: bytes) -> Chunk:
    if len(frame) < HEADER_BYTES:
        raise FrameError(f"chunk frame of {len(frame)} bytes is shorter than its {HEADER_BYTES}-byte header")
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError(f"chunk frame of {len(frame)} bytes is over the limit of {MAX_FRAME_BYTES} bytes")
    magic, raw_id, offset = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameError("binary frame is not a file chunk")
    return Chunk(uuid.UUID(bytes=raw_id).hex, offset, memoryview(frame)[HEADER_BYTES:])

"""getfile's bytes from agent to server: one HTTP PUT per leg of a transfer (SPEC §7, DR-12).

    PUT /agent/v1/transfers/{transfer_id}?offset=N&ticket=T
    Content-Length: the file's size - N
    <the file's bytes from N>

The signed getfile envelope carries the transfer id, the offset, the path to
PUT to and a one-time ticket bound to that transfer and device. The bytes
travel on a connection of their own over the TLS pinned at enrollment, written
by a blocking client in the command's thread; the WebSocket carries what the
transfer is (the ``transfer_start`` row, Done with the device's sha256). An
upload whose connection broke ends with the error code
``TRANSFER_INTERRUPTED``: the server then resumes it from its durable offset
with a new envelope and a new ticket.
"""

from __future__ import annotations

CHUNK_BYTES = 1024 * 1024  # what the agent reads and sends at a time
TRANSFER_INTERRUPTED = "transfer_interrupted"
UPLOAD_ROUTE = "/agent/v1/transfers/{transfer_id}"


def upload_path(transfer_id: str) -> str:
    return UPLOAD_ROUTE.format(transfer_id=transfer_id)

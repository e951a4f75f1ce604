"""getfile's bytes to the server: one HTTP PUT per leg of a transfer (SPEC §7, DR-12).

``PUT {server}/agent/v1/transfers/{id}?offset=N&ticket=T`` with Content-Length
the bytes that remain, over the TLS pinned at enrollment, on a connection of
its own. It is written by the standard library's blocking client in the
command's worker thread: the socket's TLS runs outside the GIL and outside the
agent's event loop, several times the rate of binary frames on the WebSocket
here (bench/getfile.py). The caller hands blocks one at a time, so no more than
one block is ever in memory.

A connection that breaks raises :class:`UploadBroken`; getfile reports it with
the code ``transfer_interrupted`` and the server resumes the transfer from its
durable offset with a new envelope and ticket. A refusal by the server raises
``CommandFailed`` with the server's message.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path

from liveresponse.agent.tls import pinned_context
from liveresponse.protocol.errors import CommandFailed

TIMEOUT_S = 60.0


class UploadBroken(Exception):
    """The upload's connection failed before the server confirmed every byte."""


class Upload:
    """One PUT under way: ``send`` each block, then ``finish`` for the server's answer."""

    def __init__(self, conn: http.client.HTTPSConnection) -> None:
        self.conn = conn

    def send(self, block: bytes | memoryview) -> None:
        try:
            self.conn.send(block)
        except OSError as exc:
            self._refused_or_broken(exc)

    def finish(self) -> int:
        """The server's count of bytes it holds, once it answered 200."""
        try:
            response = self.conn.getresponse()
            body = response.read(65536)
        except (OSError, http.client.HTTPException) as exc:
            raise UploadBroken(f"the upload connection broke: {exc}") from None
        if response.status != 200:
            raise CommandFailed(f"the server refused the upload (HTTP {response.status}): {_message(body)}")
        return int(json.loads(body).get("received_bytes", -1))

    def _refused_or_broken(self, exc: OSError) -> None:
        # The server may have answered (a refusal) and closed before reading the whole body: say why.
        try:
            response = self.conn.getresponse()
            body = response.read(65536)
        except (OSError, http.client.HTTPException):
            raise UploadBroken(f"the upload connection broke: {exc}") from None
        raise CommandFailed(f"the server refused the upload (HTTP {response.status}): {_message(body)}")

    def close(self) -> None:
        self.conn.close()


class Uploader:
    def __init__(self, server_url: str, ca_path: Path) -> None:
        parsed = urllib.parse.urlparse(server_url)
        self.host = parsed.hostname or ""
        self.port = parsed.port or 443
        self.ca_path = ca_path
        self._context: ssl.SSLContext | None = None

    def open(self, path: str, ticket: str, offset: int, length: int) -> Upload:
        """Start the PUT of ``length`` bytes from ``offset``; the caller sends them and calls finish."""
        if self._context is None:
            self._context = pinned_context(str(self.ca_path))
        query = urllib.parse.urlencode({"offset": offset, "ticket": ticket})
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=TIMEOUT_S)
        try:
            conn.putrequest("PUT", f"{path}?{query}", skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise UploadBroken(f"could not open the upload connection: {exc}") from None
        return Upload(conn)


def _message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error") or {}
        return str(error.get("message") or body[:200].decode(errors="replace"))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")

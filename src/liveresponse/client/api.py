"""Async client of the server API (REST) and the console channel (WebSocket)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from liveresponse.client.config import ClientConfig
from liveresponse.protocol.errors import LiveResponseError
from liveresponse.protocol.messages import MAX_FRAME_BYTES


class ApiError(LiveResponseError):
    """An error answered by the server; ``code`` is the server's wire code."""

    def __init__(self, code: str, message: str, status: int = 0, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.code = code  # type: ignore[misc]
        self.status = status


class ConnectError(LiveResponseError):
    code = "connect"


def tls_context(ca_path: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot read the CA certificate {ca_path}: {exc}") from None


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        fields = {k: v for k, v in error.items() if k not in ("code", "message")}
        raise ApiError(str(error["code"]), str(error["message"]), response.status_code, **fields)
    except (ValueError, KeyError, TypeError):
        raise ApiError("http", f"HTTP {response.status_code}: {response.text[:200]}", response.status_code) from None


class Client:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.ssl = tls_context(config.ca_path)
        self.http = httpx.AsyncClient(
            base_url=config.server,
            verify=self.ssl,
            headers={"authorization": f"Bearer {config.token}"},
            timeout=httpx.Timeout(30.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ConnectError(f"cannot connect to {self.config.server}: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectError(f"request to {self.config.server} failed: {exc}") from None
        _raise_for(response)
        return response.json()

    async def devices(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/api/v1/devices"))

    async def sessions(self, include_ended: bool = False) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/api/v1/sessions", params={"all": str(include_ended).lower()}))

    async def open_session(self, device: str) -> dict[str, Any]:
        return dict(await self._call("POST", "/api/v1/sessions", json={"device": device}))

    async def end_session(self, session_id: str) -> dict[str, Any]:
        return dict(await self._call("DELETE", f"/api/v1/sessions/{session_id}"))

    async def run(self, session_id: str, line: str, wait_s: float = 30.0) -> dict[str, Any]:
        body = {"command_line": line, "wait_s": wait_s}
        return dict(await self._call("POST", f"/api/v1/sessions/{session_id}/commands", json=body))

    async def command(self, command_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/api/v1/commands/{command_id}"))

    async def cancel(self, command_id: str) -> dict[str, Any]:
        return dict(await self._call("POST", f"/api/v1/commands/{command_id}/cancel"))

    async def session_log(self, session_id: str) -> list[dict[str, Any]]:
        return list(await self._call("GET", f"/api/v1/sessions/{session_id}/commands"))

    async def downloads(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/api/v1/downloads"))

    async def download(self, download_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/api/v1/downloads/{download_id}"))

    async def command_log(self, **filters: str) -> list[dict[str, Any]]:
        """Filters: user, device, type (command name), status, session, since, until (ISO 8601), limit."""
        return list(await self._call("GET", "/api/v1/log", params=filters))

    async def audit(self, **filters: str) -> list[dict[str, Any]]:
        """Filters: user, device, type (event or prefix), since, until (ISO 8601), limit."""
        return list(await self._call("GET", "/api/v1/audit", params=filters))

    @asynccontextmanager
    async def console_channel(self, session_id: str) -> AsyncIterator[ConsoleChannel]:
        url = self.config.server.replace("https://", "wss://", 1) + f"/api/v1/sessions/{session_id}/console"
        headers = {"authorization": f"Bearer {self.config.token}"}
        try:
            # No per-message compression: frames are small or already dense, and it costs latency (bench/rtt).
            async with connect(
                url, ssl=self.ssl, additional_headers=headers, max_size=MAX_FRAME_BYTES, compression=None
            ) as ws:
                yield ConsoleChannel(ws)
        except (OSError, websockets.exceptions.InvalidHandshake) as exc:
            raise ConnectError(f"cannot open the console channel: {exc}") from None


async def login(server: str, ca_path: str, user: str, password: str, tenant: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server, verify=tls_context(ca_path), timeout=30) as http:
        try:
            response = await http.post(
                "/api/v1/auth/login", json={"user": user, "password": password, "tenant": tenant}
            )
        except httpx.HTTPError as exc:
            raise ConnectError(f"cannot connect to {server}: {exc}") from None
        _raise_for(response)
        return dict(response.json())


class ConsoleChannel:
    """Send lines and cancels; read events (accepted, error, rows, done) in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ref = 0

    def next_ref(self) -> int:
        self._ref += 1
        return self._ref

    async def send_line_reserved(self, reserved: tuple[int, str]) -> int:
        """Send a line under a ref taken with next_ref (so the answer can be awaited before it arrives)."""
        ref, line = reserved
        try:
            await self.ws.send(json.dumps({"type": "run", "line": line, "ref": ref}))
        except websockets.exceptions.ConnectionClosed as exc:
            raise ConnectError(f"the console channel closed: {exc}") from None
        return ref

    async def send_line(self, line: str) -> int:
        return await self.send_line_reserved((self.next_ref(), line))

    async def cancel(self, command_id: str) -> None:
        await self.ws.send(json.dumps({"type": "cancel", "command_id": command_id}))

    async def next_event(self) -> dict[str, Any]:
        try:
            return dict(json.loads(await self.ws.recv()))
        except websockets.exceptions.ConnectionClosed as exc:
            raise ConnectError(f"the console channel closed: {exc}") from None

"""The agent gateway: one WebSocket per connected agent (SPEC §11).

Handshake: the server sends a random challenge; the agent answers with its
device id and an Ed25519 signature over it made with the device key created
at enrollment; versions are exchanged and a mismatch is refused naming both.
Afterwards the server pushes signed envelopes down the socket and the agent
streams Rows and Done back, which the gateway hands to the CommandService.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.websockets import WebSocket, WebSocketDisconnect

from liveresponse import __version__
from liveresponse.protocol import SUPPORTED_PROTOCOL_VERSIONS
from liveresponse.protocol import messages as m
from liveresponse.protocol.errors import FrameError
from liveresponse.protocol.signing import b64, unb64
from liveresponse.server.store.store import AuditEvent, Store

log = logging.getLogger("liveresponse.gateway")

HEARTBEAT_S = 15.0
LAST_SEEN_WRITE_S = 30.0
AUTH_TIMEOUT_S = 10.0


@dataclass
class AgentLink:
    device_id: str
    tenant_id: str
    websocket: WebSocket
    agent_version: str
    connected_at: float = field(default_factory=time.time)
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_seen_written: float = 0.0

    async def send(self, message: m.Hello | m.Welcome | m.Refused | m.Signed | m.HeartbeatAck) -> None:
        async with self._send_lock:
            await self.websocket.send_text(m.encode(message))


AgentMessageHandler = Callable[[AgentLink, m.Rows | m.Done], Awaitable[None]]
LinkHandler = Callable[[AgentLink], Awaitable[None]]


class Gateway:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.links: dict[str, AgentLink] = {}
        self.on_message: AgentMessageHandler | None = None
        self.on_disconnect: LinkHandler | None = None
        self.on_connect: LinkHandler | None = None

    def link(self, device_id: str) -> AgentLink | None:
        return self.links.get(device_id)

    def is_online(self, device_id: str) -> bool:
        return device_id in self.links

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        link = await self._handshake(websocket)
        if link is None:
            return
        previous = self.links.get(link.device_id)
        self.links[link.device_id] = link
        if previous is not None:
            await previous.websocket.close(code=4000, reason="replaced by a newer connection of this device")
        try:
            if self.on_connect is not None:
                await self.on_connect(link)
            await self._receive_loop(link)
        finally:
            if self.links.get(link.device_id) is link:
                del self.links[link.device_id]
                if self.on_disconnect is not None:
                    await self.on_disconnect(link)
            log.info("agent %s disconnected", link.device_id)

    async def _refuse(self, websocket: WebSocket, code: str, message: str) -> None:
        log.warning("agent refused: %s", message)
        try:
            await websocket.send_text(m.encode(m.Refused(code=code, message=message)))
            await websocket.close(code=4001, reason=code)
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def _handshake(self, websocket: WebSocket) -> AgentLink | None:
        challenge = b64(os.urandom(32))
        hello = m.Hello(
            protocol_versions=list(SUPPORTED_PROTOCOL_VERSIONS), challenge=challenge, server_time=time.time()
        )
        await websocket.send_text(m.encode(hello))
        try:
            frame = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
            auth = m.decode(frame)
        except (TimeoutError, WebSocketDisconnect, FrameError, KeyError) as exc:
            await self._refuse(websocket, "bad_frame", f"no valid auth message: {exc}")
            return None
        if not isinstance(auth, m.Auth):
            await self._refuse(websocket, "bad_frame", f"expected auth, got {auth.type}")
            return None
        device = await self.store.device(auth.device_id)
        if device is None:
            await self._refuse(websocket, "unauthenticated", f"unknown device {auth.device_id}: enroll again")
            return None
        try:
            key = serialization.load_pem_public_key(device.public_key.encode())
            assert isinstance(key, Ed25519PublicKey)
            key.verify(unb64(auth.signature), m.auth_payload(challenge, auth.device_id))
        except (InvalidSignature, ValueError, AssertionError):
            await self.store.audit(
                AuditEvent(
                    device.tenant_id, f"device:{device.id}", "agent.connect", "denied", {"reason": "bad signature"}
                )
            )
            await self._refuse(websocket, "unauthenticated", "device key proof failed")
            return None
        common = set(auth.protocol_versions) & set(SUPPORTED_PROTOCOL_VERSIONS)
        if not common:
            await self._refuse(
                websocket,
                "protocol_version",
                f"agent {auth.agent_version} speaks protocol version(s) {auth.protocol_versions}; server "
                f"{__version__} speaks {list(SUPPORTED_PROTOCOL_VERSIONS)}: upgrade the older side",
            )
            return None
        link = AgentLink(device.id, device.tenant_id, websocket, auth.agent_version)
        await link.send(m.Welcome(protocol_version=max(common), heartbeat_s=HEARTBEAT_S))
        await self.store.touch_device(device.id, agent_version=auth.agent_version, name=auth.hostname)
        link.last_seen_written = time.time()
        log.info("agent %s (%s) connected", device.id, auth.hostname)
        return link

    async def _receive_loop(self, link: AgentLink) -> None:
        while True:
            try:
                received = await link.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if received["type"] == "websocket.disconnect":
                return
            if received.get("bytes") is not None:
                # getfile's bytes travel by HTTP PUT (DR-12); a binary frame is refused and logged.
                log.warning("agent %s sent a binary frame of %d bytes: refused", link.device_id, len(received["bytes"]))
                continue
            frame = received.get("text") or ""
            try:
                message = m.decode(frame)
            except FrameError as exc:
                # A bad frame is refused and logged; the connection and everything stored stay (SPEC §11).
                log.warning("agent %s sent a bad frame: %s", link.device_id, exc.message)
                continue
            if isinstance(message, m.Heartbeat):
                await link.send(m.HeartbeatAck(sent_at=message.sent_at))
                now = time.time()
                if now - link.last_seen_written > LAST_SEEN_WRITE_S:
                    link.last_seen_written = now
                    await self.store.touch_device(link.device_id)
            elif isinstance(message, m.Rows | m.Done):
                if self.on_message is not None:
                    await self.on_message(link, message)
            else:
                log.warning("agent %s sent unexpected %s", link.device_id, message.type)

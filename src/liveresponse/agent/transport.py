"""``lr agent run``: one outbound WebSocket, reconnect with backoff and jitter, heartbeats.

The connection is the only way in: the device opens no port (SPEC §1). Each
connection starts with the challenge handshake (protocol/messages.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from liveresponse import __version__
from liveresponse.agent.policy import PolicyError, PolicyFile
from liveresponse.agent.quarantine import Vault
from liveresponse.agent.runner import Runner
from liveresponse.agent.state import AgentState, ReplayJournal
from liveresponse.agent.tls import pinned_context
from liveresponse.agent.upload import Uploader
from liveresponse.agent.workfolder import WorkFolder
from liveresponse.protocol import PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS
from liveresponse.protocol import messages as m
from liveresponse.protocol.errors import FrameError
from liveresponse.protocol.signing import ReplayGuard, b64

log = logging.getLogger("liveresponse.agent")


@dataclass
class Backoff:
    """Exponential backoff with full jitter: sleep uniform(0, min(cap, base * 2**n))."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt += 1
        return random.uniform(self.base_s / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Refused(Exception):
    pass


class Agent:
    def __init__(
        self, state_dir: Path, root: str = "/", boot_id_file: Path | None = None, policy: PolicyFile | None = None
    ) -> None:
        self.policy = policy or PolicyFile()
        self.policy.current()  # fail closed: an unusable policy file stops the agent here
        self.state = AgentState(state_dir)
        self.identity = self.state.load_identity()
        # putfile's working folder; files put without -keep in an earlier boot go now (workfolder.py).
        self.files = WorkFolder(state_dir, self.identity.server_url, self.state.ca_path, boot_id_file)
        self.files.clean_after_boot()
        Vault(state_dir)  # the quarantine clears what a writer killed mid-blob left (agent/quarantine.py)
        self.device_key = self.state.device_key()
        self.journal = ReplayJournal(self.state.replay_path)
        self.guard = ReplayGuard(self.journal.load(time.time()))
        self.runner = Runner(
            self.identity.device_id,
            self.state.command_key(),
            self.guard,
            root=root,
            on_accept=self.journal.record,
            files=self.files,
            state_dir=state_dir,
            policy=self.policy,
            uploader=Uploader(self.identity.server_url, self.state.ca_path),
        )
        self.ssl = pinned_context(str(self.state.ca_path))
        self.backoff = Backoff()

    async def run_forever(self) -> None:
        url = self.identity.server_url.replace("https://", "wss://", 1) + "/agent/v1/connect"
        while True:
            try:
                async with connect(
                    url, ssl=self.ssl, max_size=m.MAX_FRAME_BYTES, open_timeout=10, ping_interval=20, compression=None
                ) as ws:
                    await self._serve(ws)
            except Refused as exc:
                log.error("server refused this agent: %s", exc)
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError, FrameError) as exc:
                log.warning("connection to %s lost or failed: %s", url, exc)
            except Exception:  # the agent must outlive any one connection
                log.exception("connection to %s ended unexpectedly", url)
            self.runner.cancel_all()
            delay = self.backoff.next_delay()
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> None:
        hello = m.decode(await asyncio.wait_for(ws.recv(), 10))
        if not isinstance(hello, m.Hello):
            raise Refused(f"expected hello, got {hello.type}")
        auth = m.Auth(
            device_id=self.identity.device_id,
            protocol_version=PROTOCOL_VERSION,
            protocol_versions=list(SUPPORTED_PROTOCOL_VERSIONS),
            agent_version=__version__,
            hostname=socket.gethostname(),
            os=f"{platform.system().lower()} {platform.release()}",
            signature=b64(self.device_key.sign(m.auth_payload(hello.challenge, self.identity.device_id))),
        )
        await ws.send(m.encode(auth))
        answer = m.decode(await asyncio.wait_for(ws.recv(), 10))
        if isinstance(answer, m.Refused):
            raise Refused(f"{answer.code}: {answer.message}")
        if not isinstance(answer, m.Welcome):
            raise Refused(f"expected welcome, got {answer.type}")
        log.info("connected to %s as %s", self.identity.server_url, self.identity.device_id)
        self.backoff.reset()
        send_lock = asyncio.Lock()

        async def send(message: m.Rows | m.Done | m.Heartbeat) -> None:
            async with send_lock:
                await ws.send(m.encode(message))

        async with asyncio.TaskGroup() as tasks:

            def spawn(coro: Any) -> asyncio.Task[None]:
                return tasks.create_task(coro)

            heartbeat = tasks.create_task(self._heartbeats(send, answer.heartbeat_s))
            try:
                async for frame in ws:
                    try:
                        message = m.decode(frame)
                    except FrameError as exc:
                        log.warning("bad frame from server refused: %s", exc.message)
                        continue
                    if isinstance(message, m.Signed):
                        await self.runner.handle(message, send, spawn)
                    elif isinstance(message, m.HeartbeatAck):
                        pass
                    else:
                        log.warning("unexpected %s from server", message.type)
            finally:
                heartbeat.cancel()
                self.runner.cancel_all()

    async def _heartbeats(self, send: Any, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await send(m.Heartbeat(sent_at=time.time()))
            except websockets.exceptions.ConnectionClosed:
                return


def run(state_dir: Path, root: str = "/", boot_id_file: Path | None = None, policy_file: Path | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines would log fetch tickets
    try:
        agent = Agent(state_dir, root=root, boot_id_file=boot_id_file, policy=PolicyFile(policy_file))
    except PolicyError as exc:
        print(f"lr agent: {exc.message}; the agent does not start with an unusable policy", file=sys.stderr)
        return 2
    print(f"liveresponse agent {agent.identity.device_id} -> {agent.identity.server_url}", flush=True)
    if agent.policy.current().forbidden or agent.policy.current().getfile_max_bytes is not None:
        log.info("device policy %s in force", agent.policy.path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.run_forever())
    return 0

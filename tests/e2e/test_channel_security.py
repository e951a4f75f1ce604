"""A real agent process against a server peer the test controls (SPEC §11).

The test plays the server: its own CA and command key, the real handshake,
then envelopes that are valid, tampered, re-targeted, expired, replayed or
signed by a stranger. The agent must run only the valid one, and say why it
refused each of the others.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from websockets.asyncio.server import ServerConnection, serve

from liveresponse.agent.state import AgentState, Identity
from liveresponse.protocol import messages as m
from liveresponse.protocol.enrollment import make_enroll_token
from liveresponse.protocol.signing import Envelope, b64, sign, unb64
from liveresponse.server.pki import Pki
from liveresponse.testing.cluster import Cluster, free_port, lr_command

DEVICE = "dev_under_test"


class Peer:
    """The test's server side of one agent connection."""

    def __init__(self) -> None:
        self.connected: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.device_key: Ed25519PublicKey | None = None

    async def handler(self, ws: ServerConnection) -> None:
        challenge = b64(b"c" * 32)
        hello = m.Hello(protocol_versions=[1], challenge=challenge, server_time=time.time())
        await ws.send(m.encode(hello))
        auth = m.decode(await ws.recv())
        assert isinstance(auth, m.Auth) and self.device_key is not None
        self.device_key.verify(unb64(auth.signature), m.auth_payload(challenge, auth.device_id))
        await ws.send(m.encode(m.Welcome(protocol_version=1, heartbeat_s=60)))
        await self.connected.put(ws)
        await ws.wait_closed()


def envelope(command: str, args: dict[str, object], device: str = DEVICE, age_s: float = 0.0) -> Envelope:
    now = time.time() - age_s
    return Envelope(
        kind="run",
        envelope_id=uuid.uuid4().hex,
        command_id=f"cmd_{uuid.uuid4().hex[:16]}",
        device_id=device,
        session_id="ses_test",
        issued_at=now,
        expires_at=now + 60,
        command=command,
        args=args,
        cwd="/",
    )


async def answer(ws: ServerConnection, command_id: str) -> m.Done:
    while True:
        message = m.decode(await asyncio.wait_for(ws.recv(), 10))
        if isinstance(message, m.Done) and message.command_id == command_id:
            return message


@pytest.fixture()
async def agent_and_peer(
    tmp_path: Path,
) -> AsyncIterator[tuple[Peer, Ed25519PrivateKey, subprocess.Popen[bytes], Path]]:
    pki = Pki(tmp_path / "server")
    pki.ensure(["127.0.0.1"])
    port = free_port()
    device_key = Ed25519PrivateKey.generate()
    state = AgentState(tmp_path / "agent")
    state.save_enrollment(
        Identity(DEVICE, f"https://127.0.0.1:{port}", pki.fingerprint()),
        device_key,
        pki.ca_pem.read_bytes(),
        pki.command_public_key_pem(),
    )
    peer = Peer()
    peer.device_key = device_key.public_key()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_pem, pki.server_key)
    async with serve(peer.handler, "127.0.0.1", port, ssl=tls):
        with open(tmp_path / "agent.log", "ab") as log:
            agent = subprocess.Popen(lr_command("agent", "run", "--state", str(state.dir)), stdout=log, stderr=log)
        try:
            yield peer, pki.command_key(), agent, tmp_path
        finally:
            agent.terminate()
            agent.wait(10)


async def test_agent_runs_only_valid_envelopes(
    agent_and_peer: tuple[Peer, Ed25519PrivateKey, subprocess.Popen[bytes], Path],
) -> None:
    peer, key, agent, tmp_path = agent_and_peer
    ws = await asyncio.wait_for(peer.connected.get(), 20)

    valid = envelope("cd", {"path": "/tmp"})
    signed_valid = sign(valid, key)
    await ws.send(m.encode(signed_valid))
    done = await answer(ws, valid.command_id)
    assert done.status == "completed" and done.result == {"cwd": "/tmp"}

    # Tampered: the text changes after signing (a different path).
    tampered_env = envelope("cd", {"path": "/tmp"})
    good = sign(tampered_env, key)
    tampered = m.Signed(envelope=good.envelope.replace("/tmp", "/etc"), signature=good.signature)
    await ws.send(m.encode(tampered))
    done = await answer(ws, tampered_env.command_id)
    assert (done.status, done.error and done.error["reason"]) == ("failed", "bad_signature")

    # Re-targeted: a valid signature for another device.
    other = envelope("cd", {"path": "/"}, device="dev_someone_else")
    await ws.send(m.encode(sign(other, key)))
    done = await answer(ws, other.command_id)
    assert done.error is not None and done.error["reason"] == "wrong_device"

    # Expired: issued two minutes ago with a one-minute life.
    stale = envelope("cd", {"path": "/"}, age_s=120)
    await ws.send(m.encode(sign(stale, key)))
    done = await answer(ws, stale.command_id)
    assert done.error is not None and done.error["reason"] == "expired"

    # A stranger's key.
    forged = envelope("cd", {"path": "/"})
    await ws.send(m.encode(sign(forged, Ed25519PrivateKey.generate())))
    done = await answer(ws, forged.command_id)
    assert done.error is not None and done.error["reason"] == "bad_signature"

    # Replay of the valid one, on the same connection...
    await ws.send(m.encode(signed_valid))
    done = await answer(ws, valid.command_id)
    assert done.error is not None and done.error["reason"] == "replay"

    # ...and after the agent restarts (the replay memory is on disk).
    agent.terminate()
    agent.wait(10)
    with open(tmp_path / "agent.log", "ab") as log:
        restarted = subprocess.Popen(
            lr_command("agent", "run", "--state", str(tmp_path / "agent")), stdout=log, stderr=log
        )
    try:
        ws2 = await asyncio.wait_for(peer.connected.get(), 30)
        await ws2.send(m.encode(signed_valid))
        done = await answer(ws2, valid.command_id)
        assert done.error is not None and done.error["reason"] == "replay"
    finally:
        restarted.terminate()
        restarted.wait(10)
    text = (tmp_path / "agent.log").read_text()
    for reason in ("bad_signature", "wrong_device", "expired", "replay"):
        assert f"({reason})" in text


async def test_agent_refuses_a_server_with_another_ca(tmp_path: Path) -> None:
    """Pinning: the agent trusts only the CA it learned at enrollment."""
    genuine = Pki(tmp_path / "genuine")
    genuine.ensure(["127.0.0.1"])
    impostor = Pki(tmp_path / "impostor")
    impostor.ensure(["127.0.0.1"])
    port = free_port()
    state = AgentState(tmp_path / "agent")
    state.save_enrollment(
        Identity(DEVICE, f"https://127.0.0.1:{port}", genuine.fingerprint()),
        Ed25519PrivateKey.generate(),
        genuine.ca_pem.read_bytes(),
        genuine.command_public_key_pem(),
    )
    reached: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        reached.append("connected")

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(impostor.server_pem, impostor.server_key)
    async with serve(handler, "127.0.0.1", port, ssl=tls):
        with open(tmp_path / "agent.log", "ab") as log:
            agent = subprocess.Popen(lr_command("agent", "run", "--state", str(state.dir)), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while (
                time.monotonic() < deadline and "CERTIFICATE_VERIFY_FAILED" not in (tmp_path / "agent.log").read_text()
            ):
                await asyncio.sleep(0.1)
        finally:
            agent.terminate()
            agent.wait(10)
    assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "agent.log").read_text()
    assert reached == []


def test_state_directory_is_private(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "server")
    pki.ensure([])
    state = AgentState(tmp_path / "agent")
    state.save_enrollment(
        Identity(DEVICE, "https://127.0.0.1:1", pki.fingerprint()),
        Ed25519PrivateKey.generate(),
        pki.ca_pem.read_bytes(),
        pki.command_public_key_pem(),
    )
    assert (state.dir.stat().st_mode & 0o777) == 0o700
    assert (state.device_key_path.stat().st_mode & 0o777) == 0o600
    key = serialization.load_pem_private_key(state.device_key_path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert json.loads(state.identity_path.read_text())["device_id"] == DEVICE


def test_enrollment_refuses_a_server_whose_ca_is_not_the_tokens(cluster: Cluster, tmp_path: Path) -> None:
    token, _secret = make_enroll_token(cluster.url, "0" * 64)
    result = subprocess.run(
        lr_command("agent", "enroll", "--server", cluster.url, "--token", token, "--state", str(tmp_path / "a")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2  # could not authenticate the server
    assert "is not the one in the enrollment token" in result.stderr
    assert not (tmp_path / "a" / "identity.json").exists()

"""``lr agent enroll``: one-time token -> a key pair made here -> a device identity."""

from __future__ import annotations

import platform
import socket
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liveresponse import __version__
from liveresponse.agent.state import AgentState, Identity
from liveresponse.agent.tls import fetch_and_check_ca, pinned_context
from liveresponse.protocol.enrollment import read_enroll_token
from liveresponse.protocol.errors import AuthError


def guess_device_type() -> str:
    """'server' when no graphical session is configured, as responders classify Linux hosts."""
    has_display_manager = any(
        Path(p).exists()
        for p in ("/etc/X11/default-display-manager", "/usr/share/xsessions", "/usr/share/wayland-sessions")
    )
    return "workstation" if has_display_manager else "server"


def enroll(server_url: str, token: str, state_dir: Path, device_type: str | None = None) -> Identity:
    fields = read_enroll_token(token)
    server_url = server_url.rstrip("/")
    ca_pem = fetch_and_check_ca(server_url, fields["ca_sha256"])
    state = AgentState(state_dir)
    state.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_tmp = state.dir / ".ca-enroll.pem"
    ca_tmp.write_bytes(ca_pem)
    key = Ed25519PrivateKey.generate()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    body = {
        "secret": fields["secret"],
        "public_key": public_pem,
        "hostname": socket.gethostname(),
        "os": f"{platform.system().lower()} {platform.release()}",
        "device_type": device_type or guess_device_type(),
        "agent_version": __version__,
    }
    try:
        with httpx.Client(verify=pinned_context(str(ca_tmp)), timeout=30) as client:
            response = client.post(f"{server_url}/api/v1/enroll", json=body)
    except httpx.HTTPError as exc:
        raise AuthError(f"enrollment request to {server_url} failed: {exc}") from None
    finally:
        ca_tmp.unlink(missing_ok=True)
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        raise AuthError(f"enrollment refused: {message}")
    answer = response.json()
    identity = Identity(answer["device_id"], server_url, fields["ca_sha256"])
    state.save_enrollment(identity, key, ca_pem, answer["command_public_key"])
    return identity

"""The agent's state directory (mode 0700): identity, keys, pinned CA, replay memory.

identity.json      device id, server URL, CA fingerprint, enrolled at
device.key         Ed25519 private key made on this device at enrollment (0600)
ca.pem             the server CA, checked against the token's fingerprint
command_key.pem    the server's command-signing public key
replay.json        envelope ids seen and not yet expired (survives restarts)
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from liveresponse.protocol.errors import LiveResponseError

DEFAULT_STATE_DIR = Path("/var/lib/liveresponse-agent")


class StateError(LiveResponseError):
    code = "agent_state"


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def write_atomic(path: Path, data: bytes, mode: int = 0o600, fsync: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Identity:
    device_id: str
    server_url: str
    ca_sha256: str


class AgentState:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.identity_path = directory / "identity.json"
        self.device_key_path = directory / "device.key"
        self.ca_path = directory / "ca.pem"
        self.command_key_path = directory / "command_key.pem"
        self.replay_path = directory / "replay.log"

    def save_enrollment(
        self, identity: Identity, device_key: Ed25519PrivateKey, ca_pem: bytes, command_key_pem: str
    ) -> None:
        ensure_private_dir(self.dir)
        key_pem = device_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(self.device_key_path, key_pem)
        write_atomic(self.ca_path, ca_pem, 0o644)
        write_atomic(self.command_key_path, command_key_pem.encode(), 0o644)
        body = {"device_id": identity.device_id, "server_url": identity.server_url, "ca_sha256": identity.ca_sha256}
        write_atomic(self.identity_path, json.dumps(body, indent=2).encode())

    def load_identity(self) -> Identity:
        try:
            body = json.loads(self.identity_path.read_text())
            return Identity(body["device_id"], body["server_url"], body["ca_sha256"])
        except FileNotFoundError:
            raise StateError(
                f"this agent is not enrolled (no {self.identity_path}): run 'lr agent enroll --server URL --token T"
                f" --state {self.dir}' first"
            ) from None
        except (ValueError, KeyError):
            raise StateError(f"{self.identity_path} is damaged: enroll again") from None

    def device_key(self) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.device_key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise StateError(f"{self.device_key_path} is not an Ed25519 key")
        return key

    def command_key(self) -> Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.command_key_path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise StateError(f"{self.command_key_path} is not an Ed25519 public key")
        return key


class ReplayJournal:
    """Envelope ids the agent accepted, kept until they expire, so a replay is refused after a restart too.

    Appending one line per command costs microseconds where rewriting a file
    would cost a millisecond; the journal is compacted when loaded.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def load(self, now: float) -> dict[str, float]:
        seen: dict[str, float] = {}
        try:
            for line in self.path.read_text().splitlines():
                envelope_id, _, expires = line.partition(" ")
                try:
                    if float(expires) >= now - 60:
                        seen[envelope_id] = float(expires)
                except ValueError:
                    continue  # a line torn by a crash
        except FileNotFoundError:
            pass
        write_atomic(self.path, "".join(f"{k} {v}\n" for k, v in seen.items()).encode())
        return seen

    def record(self, envelope_id: str, expires_at: float) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="ascii")  # noqa: SIM115 - kept open for the agent's life
        self._fh.write(f"{envelope_id} {expires_at}\n")
        self._fh.flush()

"""Where a client finds its server, credential and CA (SPEC §3).

``LR_SERVER``, ``LR_TOKEN`` and ``LR_CA`` win when set; otherwise the file
written by ``lr login`` (``$XDG_CONFIG_HOME/liveresponse/credentials.json``,
mode 0600).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from liveresponse.protocol.errors import AuthError


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str
    ca_path: str


def credentials_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "liveresponse" / "credentials.json"


def load_client_config(env: Mapping[str, str] = os.environ) -> ClientConfig:
    stored: dict[str, str] = {}
    path = credentials_path(env)
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            stored = {}
    server = env.get("LR_SERVER") or stored.get("server")
    token = env.get("LR_TOKEN") or stored.get("token")
    ca = env.get("LR_CA") or stored.get("ca")
    if not server or not token:
        raise AuthError("not signed in: run 'lr login --server URL --user NAME', or set LR_SERVER and LR_TOKEN")
    if not ca:
        raise AuthError("the server's CA certificate is unknown: set LR_CA (DIR/tls/ca.pem on the server)")
    return ClientConfig(server.rstrip("/"), token, ca)


def save_credentials(env: Mapping[str, str], server: str, token: str, ca_pem: bytes) -> Path:
    path = credentials_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_file = path.parent / "ca.pem"
    ca_file.write_bytes(ca_pem)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"server": server, "token": token, "ca": str(ca_file)}, fh)
    return path

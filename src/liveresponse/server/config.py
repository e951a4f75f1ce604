"""The server's one frozen configuration, built in main() and passed down (STYLE.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    db_url: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    public_url: str = ""
    node_id: str = "node-1"
    bus_url: str = "inproc"

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"https://{host}:{self.listen_port}"


def default_db_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'liveresponse.db'}"


SERVER_INFO = "server.json"  # written by `lr server`: the URL that enrollment tokens carry


def write_server_info(data_dir: Path, url: str) -> None:
    (data_dir / SERVER_INFO).write_text(json.dumps({"url": url}))


def read_server_url(data_dir: Path) -> str | None:
    try:
        return str(json.loads((data_dir / SERVER_INFO).read_text())["url"])
    except (FileNotFoundError, ValueError, KeyError):
        return None

"""``lr server``: TLS always, its own CA on first start, uvicorn's graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from urllib.parse import urlparse

import uvicorn

from liveresponse.protocol.messages import MAX_FRAME_BYTES
from liveresponse.server.app import make_app
from liveresponse.server.config import ServerConfig, write_server_info
from liveresponse.server.pki import Pki
from liveresponse.server.store.store import Store


def cert_hostnames(config: ServerConfig) -> list[str]:
    names = [config.listen_host] if config.listen_host not in ("0.0.0.0", "::") else []
    if config.public_url:
        host = urlparse(config.public_url).hostname
        if host:
            names.append(host)
    return names


async def prepare(config: ServerConfig) -> tuple[Store, Pki]:
    """`lr admin init` and the server's first start both come here (idempotent)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = Pki(config.data_dir)
    pki.ensure(cert_hostnames(config))
    store = Store(config.db_url)
    await store.migrate()
    await store.ensure_tenant()
    return store, pki


async def serve(config: ServerConfig) -> None:
    store, pki = await prepare(config)
    write_server_info(config.data_dir, config.url)
    app = make_app(config, store, pki)
    uv_config = uvicorn.Config(
        app,
        host=config.listen_host,
        port=config.listen_port,
        ssl_certfile=str(pki.server_pem),
        ssl_keyfile=str(pki.server_key),
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        ws_max_size=MAX_FRAME_BYTES,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level="warning",
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(uv_config)
    logging.getLogger("liveresponse").info("listening on %s", config.url)
    try:
        await server.serve()
    finally:
        await store.close()


def run(config: ServerConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"liveresponse server on {config.url} (data {Path(config.data_dir)})", flush=True)
    asyncio.run(serve(config))
    return 0

"""The app in memory (STYLE.md tier 2): a real store on SQLite, routes through httpx.ASGITransport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from liveresponse.server.app import make_app
from liveresponse.server.config import ServerConfig, default_db_url
from liveresponse.server.credentials import hash_password, token_hash
from liveresponse.server.main import prepare
from liveresponse.server.state import AppState
from liveresponse.server.store.models import Device
from liveresponse.server.store.store import Store


@dataclass
class FakeClock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    app: FastAPI
    state: AppState
    store: Store
    clock: FakeClock
    tenant_id: str
    http: httpx.AsyncClient

    async def user(self, name: str, role: str, password: str | None = None, **kw: Any) -> dict[str, str]:
        pw = None if password is None else hash_password(password)
        user = await self.store.add_user(self.tenant_id, name, role, pw, "test", **kw)
        await self.store.add_token(user.id, "t", token_hash(f"lrt_{name}"), None)
        return {"authorization": f"Bearer lrt_{name}"}

    async def device(self, name: str = "host-1", group_id: str | None = None, online: bool = True) -> Device:
        secret = f"secret-{name}-{time.monotonic_ns()}"
        await self.store.add_enroll_token(self.tenant_id, group_id, token_hash(secret), time.time() + 60, 1, "test")
        device = await self.store.enroll_device(token_hash(secret), name, "linux", "workstation", "pem", "0")
        assert device is not None
        if online:  # the gates only ask whether a link is there (gateway.is_online)
            self.state.gateway.links[device.id] = FakeLink(device.id)  # type: ignore[assignment]
        return device


@dataclass
class FakeLink:
    device_id: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = ServerConfig(data_dir=tmp_path / "data", db_url=default_db_url(tmp_path / "data"))
    store, pki = await prepare(config)
    clock = FakeClock()
    app = make_app(config, store, pki, clock=clock)
    tenant = await store.ensure_tenant()
    await store.set_setting(tenant.id, "live_response_enabled", "true", "test")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://lr.test") as http:
            yield World(app, app.state.lr, store, clock, tenant.id, http)
    finally:
        await store.close()

"""Session limits under concurrency through the real server, on SQLite and on PostgreSQL (SPEC §6, DR-3).

Each backend gets its own cluster: a real ``lr server`` and twenty real agents
(liveresponse.testing.fleet: the agent's own code, twenty identities in one
process). Fifty simultaneous attempts on one device give exactly one session;
twenty users on twenty devices with ``max_sessions=10`` give exactly ten.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from liveresponse.server.credentials import token_hash
from liveresponse.server.store.store import Store
from liveresponse.testing.cluster import Cluster

FLEET = 20
PG = "postgres@127.0.0.1:5432"


def _pg_database() -> str:
    async def create() -> str:
        try:
            admin = await asyncpg.connect(f"postgresql://{PG}/test", timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            if os.environ.get("LR_REQUIRE_PG") == "1":
                pytest.fail(f"PostgreSQL does not answer: {exc!r} (LR_REQUIRE_PG=1)")
            pytest.skip(f"PostgreSQL does not answer: {exc!r}")
        name = f"lr_race_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        return name

    return asyncio.run(create())


def _pg_drop(name: str) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(f"postgresql://{PG}/test", timeout=5)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())


class Fleet:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.device_ids: list[str] = []
        self.tokens: dict[str, str] = {}

    def start(self) -> None:
        c = self.cluster
        token = c.admin("enroll-token", "create", "--server-url", c.url, "--uses", str(FLEET)).stdout.strip()
        state = c.base / "fleet"
        state.mkdir()
        with open(c.base / "fleet.log", "ab") as log:
            args = ["--server", c.url, "--token", token, "--count", str(FLEET), "--state", str(state)]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "liveresponse.testing.fleet", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (state / "devices.json").exists() and self._online() == FLEET:
                self.device_ids = json.loads((state / "devices.json").read_text())
                return
            time.sleep(0.2)
        raise AssertionError(f"the fleet did not come online: {(c.base / 'fleet.log').read_text()[-2000:]}")

    def _online(self) -> int:
        state = self.cluster.base / "fleet" / "devices.json"
        ids = set(json.loads(state.read_text()))
        with self.cluster.api() as api:
            return sum(1 for d in api.get("/api/v1/devices").json() if d["id"] in ids and d["status"] == "online")

    def add_users(self, count: int) -> list[str]:
        """Responders added through the store, as ``lr admin`` does (one process instead of 2 x count)."""

        async def add() -> list[str]:
            store = _store(self.cluster)
            try:
                tenant = await store.tenant_by_name("default")
                names = []
                for i in range(count):
                    name = f"racer{i}"
                    user = await store.add_user(tenant.id, name, "responder", None, "test")
                    secret = f"lrt_{name}_{uuid.uuid4().hex}"
                    await store.add_token(user.id, "race", token_hash(secret), None)
                    self.tokens[name] = secret
                    names.append(name)
                return names
            finally:
                await store.close()

        return asyncio.run(add())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    db_name = _pg_database() if request.param == "postgresql" else None
    db_url = None if db_name is None else f"postgresql+asyncpg://{PG}/{db_name}"
    cluster = Cluster(tmp_path_factory.mktemp(f"race-{request.param}"), db_url=db_url)
    running = Fleet(cluster)
    try:
        cluster.start()
        running.start()
        yield running
    finally:
        running.stop()
        cluster.stop()
        if db_name is not None:
            _pg_drop(db_name)


async def _open_all(cluster: Cluster, attempts: list[tuple[str, str]]) -> list[httpx.Response]:
    """Every (token, device) attempt at the same moment, each on its own connection."""
    clients = [
        httpx.AsyncClient(base_url=cluster.url, verify=cluster.tls(), headers={"authorization": f"Bearer {t}"})
        for t, _ in attempts
    ]
    try:
        for client in clients:  # connect (TLS) first, so the POSTs themselves race
            await client.get("/api/v1/health")
        return list(
            await asyncio.gather(
                *(c.post("/api/v1/sessions", json={"device": d}) for c, (_, d) in zip(clients, attempts, strict=True))
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def _end_all(cluster: Cluster, responses: list[httpx.Response]) -> None:
    with cluster.api() as api:
        for r in responses:
            if r.status_code == 200:
                assert api.delete(f"/api/v1/sessions/{r.json()['id']}").status_code == 200


def _settings(cluster: Cluster, **values: int) -> None:
    """What ``lr admin settings set`` does, for several keys in one process."""

    async def apply() -> None:
        store = _store(cluster)
        try:
            tenant = await store.tenant_by_name("default")
            for key, value in values.items():
                await store.set_setting(tenant.id, key, str(value), "admin-cli")
        finally:
            await store.close()

    asyncio.run(apply())


def _store(cluster: Cluster) -> Store:
    return Store(cluster.db_url or f"sqlite+aiosqlite:///{cluster.data / 'liveresponse.db'}")


def test_fifty_attempts_on_one_device_give_one_session(fleet: Fleet) -> None:
    c = fleet.cluster
    _settings(c, sessions_per_user=100, max_sessions=100, sessions_per_device=1)
    device = fleet.device_ids[0]
    responses = asyncio.run(_open_all(c, [(c.tokens["alice"], device)] * 50))
    try:
        won = [r for r in responses if r.status_code == 200]
        lost = [r for r in responses if r.status_code != 200]
        assert len(won) == 1
        assert len(lost) == 49
        holder = won[0].json()
        for r in lost:
            error = r.json()["error"]
            assert (r.status_code, error["code"], error["limit"]) == (409, "session_refused", "sessions_per_device")
            assert (error["holder"], error["holder_session"]) == ("alice", holder["id"])
            assert f"session {holder['id']} of user alice, open since {error['since']}" in error["message"]
    finally:
        _end_all(c, responses)
    with c.api() as api:
        opened = [s for s in api.get("/api/v1/sessions", params={"all": "true"}).json() if s["device_id"] == device]
    assert len(opened) == 1


def test_twenty_users_on_twenty_devices_with_a_limit_of_ten(fleet: Fleet) -> None:
    c = fleet.cluster
    _settings(c, sessions_per_user=1, sessions_per_device=1, max_sessions=10)
    users = (fleet.tokens and list(fleet.tokens)) or fleet.add_users(FLEET)
    attempts = [(fleet.tokens[u], d) for u, d in zip(users, fleet.device_ids, strict=True)]
    responses = asyncio.run(_open_all(c, attempts))
    try:
        won = [r for r in responses if r.status_code == 200]
        lost: list[dict[str, Any]] = [r.json()["error"] for r in responses if r.status_code != 200]
        assert len(won) == 10
        assert len(lost) == 10
        assert {e["limit"] for e in lost} == {"max_sessions"}
        winners = {r.json()["user"] for r in won}
        for error in lost:
            assert error["holder"] in winners  # the oldest open session's user, named
            assert "the tenant has 10 open sessions (limit max_sessions=10)" in error["message"]
        with c.api() as api:
            assert len(api.get("/api/v1/sessions").json()) == 10
    finally:
        _end_all(c, responses)
        _settings(c, max_sessions=10)

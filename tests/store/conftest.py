"""The store suite runs on SQLite and on PostgreSQL (SPEC §12, STYLE.md tier 3).

PostgreSQL is reached at 127.0.0.1:5432 as ``postgres``; each test gets a fresh
database, dropped afterwards. When nothing answers there the PostgreSQL case is
skipped, unless ``LR_REQUIRE_PG=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from liveresponse.server.store.store import Store

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer: {exc!r}"
        if os.environ.get("LR_REQUIRE_PG") == "1":
            pytest.fail(f"{message} (LR_REQUIRE_PG=1: the PostgreSQL store suite must run)")
        pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        try:
            await s.migrate()
            yield s
        finally:
            await s.close()
        return
    admin = await _pg_admin()
    name = f"lr_store_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        s = Store(f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}")
        try:
            await s.migrate()
            yield s
        finally:
            await s.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

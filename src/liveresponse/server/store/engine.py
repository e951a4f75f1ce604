"""Engine set-up per backend (SQLite embedded default, PostgreSQL via asyncpg).

SQLite runs synchronously, inline on the event loop (DR-10): a statement on a
local WAL database takes tens of microseconds, while a hop through aiosqlite's
worker thread costs several times that, per statement. Because no statement
awaits anything, one transaction never interleaves with another coroutine's,
so inside the server process nothing waits for the write lock; other processes
(``lr admin``) hold it for milliseconds at most, and the busy timeout covers that.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_S = 10


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sync_sqlite_url(url: str) -> str:
    """sqlite+aiosqlite:///x -> sqlite:///x (the pysqlite driver)."""
    return "sqlite" + url[url.index(":") :]


def make_async_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        return create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_sqlite_engine(url: str, for_writes: bool) -> Engine:
    engine = create_engine(sync_sqlite_url(url), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    # Every SQLite write transaction starts with BEGIN IMMEDIATE: it takes the
    # write lock up front, so read-check-write sequences (session limits, the
    # audit chain) are serialised across connections and processes (DR-3).
    # Read-only transactions use a second engine with a plain BEGIN: in WAL
    # mode they see a consistent snapshot and never wait for a writer.
    begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine

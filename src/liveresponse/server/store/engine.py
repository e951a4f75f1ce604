"""Engine set-up per backend (SQLite embedded default, PostgreSQL via asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, for_writes: bool = True) -> AsyncEngine:
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    # Every SQLite write transaction starts with BEGIN IMMEDIATE: it takes the
    # write lock up front, so read-check-write sequences (session limits, the
    # audit chain) are serialised across connections and processes (DR-3).
    # Read-only transactions use a second engine with a plain BEGIN: in WAL
    # mode they see a consistent snapshot and never wait for a writer.
    begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine

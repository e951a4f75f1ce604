"""Store operations on transfers (getfile) and downloads."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update

from liveresponse.server.store.store import Store
from liveresponse.server.store.transfer_models import Transfer

UNFINISHED = ("receiving", "interrupted")


class TransferRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, transfer: Transfer) -> None:
        columns = (c.key for c in Transfer.__table__.columns)
        values = {key: value for key in columns if (value := getattr(transfer, key)) is not None}
        async with self.store.tx() as db:
            await self.store._core(db, insert(Transfer).values(**values))

    async def update(self, transfer_id: str, **values: Any) -> None:
        async with self.store.tx() as db:
            await self.store._core(db, update(Transfer).where(Transfer.id == transfer_id).values(**values))

    async def get(self, transfer_id: str) -> Transfer | None:
        async with self.store.read() as db:
            return await db.get(Transfer, transfer_id)

    async def unfinished(self) -> list[Transfer]:
        async with self.store.read() as db:
            rows = await db.execute(select(Transfer).where(Transfer.status.in_(UNFINISHED)))
            return list(rows.scalars())

    async def downloads(self, tenant_id: str) -> list[Transfer]:
        async with self.store.read() as db:
            q = select(Transfer).where(Transfer.tenant_id == tenant_id).order_by(Transfer.created_at)
            return list((await db.execute(q)).scalars())

    async def finish(self, transfer_id: str, status: str, sha256: str | None, error: str | None, received: int) -> None:
        await self.update(
            transfer_id, status=status, sha256=sha256, error=error, received_bytes=received, completed_at=time.time()
        )

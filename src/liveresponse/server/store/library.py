"""Store operations of the tenant library and its publishers. One method is one transaction.

Every change is audited inside its own transaction (SPEC §9): ``library.upload``,
``library.delete``, ``library.sign``, ``publisher.add``. Inside ``tx()``/``read()``
nothing is awaited but the session's own calls (store.py, DR-10).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select

from liveresponse.protocol.errors import Conflict, NotFound
from liveresponse.server.ids import new_id
from liveresponse.server.store.library_models import LibraryFile, Publisher
from liveresponse.server.store.store import AuditEvent, Store


@dataclass(frozen=True)
class NewFile:
    name: str
    size: int
    sha256: str
    description: str
    parameters_description: str | None


class LibraryOps:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def files(self, tenant_id: str) -> list[LibraryFile]:
        async with self.store.read() as db:
            q = select(LibraryFile).where(LibraryFile.tenant_id == tenant_id).order_by(LibraryFile.name)
            return list((await db.execute(q)).scalars())

    async def file(self, tenant_id: str, name: str) -> LibraryFile:
        async with self.store.read() as db:
            q = select(LibraryFile).where(LibraryFile.tenant_id == tenant_id, LibraryFile.name == name)
            found = (await db.execute(q)).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no library file {name!r}; 'library' lists them", name=name)
        return found

    async def put(self, tenant_id: str, new: NewFile, overwrite: bool, actor: str) -> tuple[LibraryFile, bool]:
        """Add a file, or replace one when ``overwrite``; returns (row, replaced).

        Replacing content clears the signature: it was made over the old sha256.
        """
        now = time.time()
        async with self.store.tx() as db:
            q = select(LibraryFile).where(LibraryFile.tenant_id == tenant_id, LibraryFile.name == new.name)
            row = (await db.execute(q)).scalar_one_or_none()
            replaced = row is not None
            if row is not None and not overwrite:
                raise Conflict(
                    f"library file {new.name!r} already exists (sha256 {row.sha256}, uploaded by {row.created_by}); "
                    "upload with --overwrite to replace it",
                    name=new.name,
                )
            if row is None:
                row = LibraryFile(
                    id=new_id("lib"), tenant_id=tenant_id, name=new.name, created_by=actor, created_at=now
                )
                db.add(row)
            old_sha = row.sha256 if replaced else None
            if old_sha != new.sha256:
                row.signature = None
                row.publisher = None
            row.size = new.size
            row.sha256 = new.sha256
            row.description = new.description
            row.parameters_description = new.parameters_description
            row.updated_at = now
            await db.flush()
            detail = {
                "name": new.name,
                "sha256": new.sha256,
                "size": new.size,
                "replaced": replaced,
                "previous_sha256": old_sha,
            }
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "library.upload", "success", detail))
            return row, replaced

    async def delete(self, tenant_id: str, name: str, actor: str) -> LibraryFile:
        async with self.store.tx() as db:
            q = select(LibraryFile).where(LibraryFile.tenant_id == tenant_id, LibraryFile.name == name)
            row = (await db.execute(q)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no library file {name!r}; 'library' lists them", name=name)
            await db.execute(delete(LibraryFile).where(LibraryFile.id == row.id))
            detail = {"name": name, "sha256": row.sha256}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "library.delete", "success", detail))
            return row

    async def set_signature(
        self, tenant_id: str, name: str, sha256: str, signature: str, publisher: str, actor: str
    ) -> LibraryFile:
        """Attach a signature checked by the caller; refused when the file changed since it was hashed."""
        async with self.store.tx() as db:
            q = select(LibraryFile).where(LibraryFile.tenant_id == tenant_id, LibraryFile.name == name)
            row = (await db.execute(q)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no library file {name!r}; upload it first", name=name)
            if row.sha256 != sha256:
                raise Conflict(f"library file {name!r} changed while it was being signed; sign it again")
            row.signature = signature
            row.publisher = publisher
            detail = {"name": name, "sha256": sha256, "publisher": publisher}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "library.sign", "success", detail))
            return row

    async def add_publisher(self, tenant_id: str, name: str, public_key: str, actor: str) -> Publisher:
        async with self.store.tx() as db:
            q = select(Publisher).where(Publisher.tenant_id == tenant_id, Publisher.name == name)
            if (await db.execute(q)).scalar_one_or_none() is not None:
                raise Conflict(f"publisher {name!r} already exists")
            publisher = Publisher(
                id=new_id("pub"),
                tenant_id=tenant_id,
                name=name,
                public_key=public_key,
                created_by=actor,
                created_at=time.time(),
            )
            db.add(publisher)
            detail = {"publisher": name, "public_key": public_key}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "publisher.add", "success", detail))
            return publisher

    async def publishers(self, tenant_id: str) -> list[Publisher]:
        async with self.store.read() as db:
            q = select(Publisher).where(Publisher.tenant_id == tenant_id).order_by(Publisher.name)
            return list((await db.execute(q)).scalars())

"""Set-up through the store, as ``lr admin`` does it, in this process (each ``lr admin`` run costs seconds)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from liveresponse.server.credentials import token_hash
from liveresponse.server.store.store import Store
from liveresponse.testing.cluster import Cluster


def store_of(cluster: Cluster) -> Store:
    return Store(cluster.db_url or f"sqlite+aiosqlite:///{cluster.data / 'liveresponse.db'}")


def with_store(cluster: Cluster, work: Any) -> Any:
    async def run() -> Any:
        store = store_of(cluster)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def add_user(cluster: Cluster, name: str, role: str, tenant: str = "default") -> str:
    """A user with an API token (kept in cluster.tokens); returns the token."""

    async def work(store: Store) -> str:
        tenant_id = (await store.tenant_by_name(tenant)).id
        user = await store.user_by_name(tenant_id, name)
        if user is None:
            user = await store.add_user(tenant_id, name, role, None, "admin-cli")
        secret = f"lrt_{name}_{uuid.uuid4().hex}"
        await store.add_token(user.id, "test", token_hash(secret), None)
        return secret

    cluster.tokens[name] = with_store(cluster, work)
    return cluster.tokens[name]


def set_settings(cluster: Cluster, tenant: str = "default", **values: object) -> None:
    async def work(store: Store) -> None:
        tenant_id = (await store.tenant_by_name(tenant)).id
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            await store.set_setting(tenant_id, key, text, "admin-cli")

    with_store(cluster, work)

"""Tenants see nothing of each other, by any route (SPEC §8).

A user of tenant "other" with the admin role walks every route of the OpenAPI
document (GETs first), with tenant default's device, session and command ids
in the path and the body. Nothing of tenant default may come back, and
nothing of it may change.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from liveresponse.client.api import Client, ConnectError
from liveresponse.client.config import ClientConfig
from liveresponse.testing.cluster import Cluster
from tests.e2e.store_access import add_user

MARKER = "tenant-a-marker-5f0c1e"  # in tenant default's command log and audit only


def _value(name: str, schema: dict[str, Any], ids: dict[str, str]) -> Any:
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return [ids["session"]]
    lowered = name.lower()
    if "device" in lowered:
        return ids["device"]
    if "command_line" in lowered or lowered == "line":
        return "dir /"
    if "command" in lowered:
        return ids["command"]
    return ids["session"]


def _path(template: str, ids: dict[str, str]) -> str:
    parts = []
    for part in template.split("/"):
        if part.startswith("{"):
            name = part.strip("{}").lower()
            key = "device" if "device" in name else "command" if "command" in name else "session"
            part = ids[key]
        parts.append(part)
    return "/".join(parts)


def _body(operation: dict[str, Any], spec: dict[str, Any], ids: dict[str, str]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    props = schema.get("properties", {})
    return {name: _value(name, prop, ids) for name, prop in props.items()}


@pytest.fixture(scope="module")
def tenant_a(cluster: Cluster) -> dict[str, str]:
    """Tenant default's objects: an open session with a command on the cluster's device."""
    with cluster.api("alice") as api:
        session = api.post("/api/v1/sessions", json={"device": cluster.device_id}).json()
        line = f"fileinfo /{MARKER}"
        command = api.post(f"/api/v1/sessions/{session['id']}/commands", json={"command_line": line, "wait_s": 30})
    return {"device": cluster.device_id, "session": session["id"], "command": command.json()["id"]}


@pytest.fixture(scope="module")
def olga(cluster: Cluster) -> str:
    cluster.admin("tenant", "add", "other")
    result = cluster.admin("user", "add", "olga", "--role", "admin", "--tenant", "other")
    assert "user olga (admin) added" in result.stdout
    return add_user(cluster, "olga", "admin", tenant="other")


def test_every_route_as_a_user_of_the_other_tenant(cluster: Cluster, tenant_a: dict[str, str], olga: str) -> None:
    with cluster.api("olga") as api:
        spec = api.get("/api/v1/openapi.json").json()
        calls = [
            (method.upper(), path, operation)
            for path, item in spec["paths"].items()
            for method, operation in item.items()
            if method in ("get", "post", "put", "patch", "delete")
        ]
        calls.sort(key=lambda c: c[0] != "GET")  # reads first: later refusals are audited in olga's own trail
        assert len(calls) >= 10
        leaks = []
        for method, template, operation in calls:
            path = _path(template, tenant_a)
            body = _body(operation, spec, tenant_a)
            response = api.request(method, path, json=body) if body is not None else api.request(method, path)
            text = response.text
            sent = path + json.dumps(body)
            # Tenant default's data that olga did not send herself (an echo of her own input is no leak).
            secrets = [MARKER, "alice", *(v for v in tenant_a.values() if v not in sent)]
            if response.status_code < 400 and template != "/api/v1/openapi.json" and any(s in text for s in secrets):
                leaks.append(f"{method} {template}: {response.status_code} {text[:300]}")
            if response.status_code >= 500:
                leaks.append(f"{method} {template}: {response.status_code} {text[:300]}")
        assert leaks == []
        assert api.get("/api/v1/devices").json() == []
        assert api.get("/api/v1/sessions", params={"all": "true"}).json() == []
        assert api.get("/api/v1/log").json() == []
        audit = api.get("/api/v1/audit").json()
        assert audit and all(tenant_a["session"] not in json.dumps(r) for r in audit[:2])
        assert all(r["actor"] in ("olga", "admin-cli") for r in audit)
    with cluster.api("alice") as api:
        row = api.get(f"/api/v1/sessions/{tenant_a['session']}").json()
        assert row["status"] == "open"  # nothing olga sent ended it
        assert api.get(f"/api/v1/commands/{tenant_a['command']}").json()["command_line"].endswith(MARKER)
        assert all(r["actor"] != "olga" for r in api.get("/api/v1/audit", params={"limit": 100000}).json())


def test_the_console_channel_of_another_tenant_is_not_found(
    cluster: Cluster, tenant_a: dict[str, str], olga: str
) -> None:
    async def attempt() -> dict[str, Any]:
        client = Client(ClientConfig(cluster.url, olga, cluster.ca))
        try:
            async with client.console_channel(tenant_a["session"]) as channel:
                return await channel.next_event()
        except ConnectError as exc:
            return {"type": "closed", "error": {"code": "closed", "message": exc.message}}
        finally:
            await client.aclose()

    event = asyncio.run(attempt())
    assert event["type"] == "error" and event["error"]["code"] == "not_found"


def test_tenant_a_session_ends(cluster: Cluster, tenant_a: dict[str, str]) -> None:
    with cluster.api("alice") as api:
        assert api.delete(f"/api/v1/sessions/{tenant_a['session']}").status_code == 200

"""Permissions (SPEC §8): every command and every API route has one. Tiers 1 and 2."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute

import liveresponse.server.api as api_package
from liveresponse.protocol.catalogue import COMMANDS, Runs, Tier
from liveresponse.server.api.deps import PUBLIC_ROUTES
from liveresponse.server.app import make_app
from liveresponse.server.config import ServerConfig, default_db_url
from liveresponse.server.main import prepare
from liveresponse.server.rbac import BUILTIN_ROLES, TIER_PERMISSION, Permission, command_permission, permissions_of

P = Permission

# WebSocket routes cannot carry a Depends(requires(...)) that answers 401/403 before the
# handshake; their handlers call deps.websocket_caller themselves, with this permission.
WEBSOCKET_PERMISSIONS: dict[str, Permission] = {
    "/api/v1/sessions/{session_id}/console": P.LIVE_RESPONSE_BASIC,
}


# -- roles and commands (tier 1) ---------------------------------------------------


def test_permission_names() -> None:
    assert {str(p) for p in Permission} == {
        "devices.read", "live_response.basic", "live_response.advanced", "library.manage",
        "settings.manage", "users.manage", "audit.read",
    }  # fmt: skip


def test_builtin_roles() -> None:
    assert {
        "viewer": {P.DEVICES_READ},
        "responder": {P.DEVICES_READ, P.LIVE_RESPONSE_BASIC},
        "advanced-responder": {P.DEVICES_READ, P.LIVE_RESPONSE_BASIC, P.LIVE_RESPONSE_ADVANCED},
        "security-admin": {
            P.DEVICES_READ, P.LIVE_RESPONSE_BASIC, P.LIVE_RESPONSE_ADVANCED, P.LIBRARY_MANAGE,
            P.SETTINGS_MANAGE, P.AUDIT_READ,
        },
        "admin": set(Permission),
    } == BUILTIN_ROLES  # fmt: skip
    assert P.USERS_MANAGE not in permissions_of("security-admin")
    assert permissions_of("admin") == frozenset(Permission)


def test_unknown_role_has_no_permission() -> None:
    assert permissions_of("root") == frozenset()
    assert permissions_of("") == frozenset()


def test_tiers_map_to_permissions() -> None:
    assert TIER_PERMISSION == {
        Tier.BASIC: P.LIVE_RESPONSE_BASIC,
        Tier.ADVANCED: P.LIVE_RESPONSE_ADVANCED,
        Tier.CONSOLE: None,
    }


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_every_command_maps_to_a_permission(spec: Any) -> None:
    permission = command_permission(spec)
    if spec.tier is Tier.CONSOLE:
        assert permission is None
        assert spec.runs is Runs.CONSOLE, f"{spec.name}: a console-tier command must not reach the agent"
    else:
        assert permission in (P.LIVE_RESPONSE_BASIC, P.LIVE_RESPONSE_ADVANCED)
        assert permission is TIER_PERMISSION[spec.tier]
    if spec.runs is Runs.AGENT:
        assert permission is not None, f"{spec.name} reaches the agent without a permission"


# -- routes (tier 1 walk of the app) ------------------------------------------------


def api_modules() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"{api_package.__name__}.{m.name}") for m in pkgutil.iter_modules(api_package.__path__)
    ]
    return [m for m in modules if hasattr(m, "router")]


def all_routes(app: FastAPI) -> list[Any]:
    routes: list[Any] = [r for r in app.routes if getattr(r, "path", None) is not None]
    for module in api_modules():
        routes.extend(module.router.routes)
    return routes


def dependency_calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from dependency_calls(dep)


def route_permission(route: Any) -> Permission | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found = {call.permission for call in dependency_calls(dependant) if hasattr(call, "permission")}
    assert len(found) <= 1, f"{route.path} depends on several permissions: {found}"
    return found.pop() if found else None


def route_name(route: Any) -> str:
    methods = ",".join(sorted(getattr(route, "methods", None) or {"WS"}))
    return f"{methods} {route.path}"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    config = ServerConfig(data_dir=tmp_path / "data", db_url=default_db_url(tmp_path / "data"))
    store, pki = await prepare(config)
    try:
        yield make_app(config, store, pki)
    finally:
        await store.close()


async def test_route_walk_finds_the_api(app: FastAPI) -> None:
    paths = {r.path for r in all_routes(app)}
    assert {"/api/v1/health", "/api/v1/me", "/api/v1/devices", "/api/v1/sessions", "/agent/v1/connect"} <= paths
    assert set(WEBSOCKET_PERMISSIONS) <= paths
    assert paths >= PUBLIC_ROUTES, f"public routes that do not exist: {PUBLIC_ROUTES - paths}"


async def test_every_route_has_a_permission_or_is_public(app: FastAPI) -> None:
    uncovered = []
    for route in all_routes(app):
        if route.path in PUBLIC_ROUTES:
            continue
        if isinstance(route, APIWebSocketRoute):
            if route.path not in WEBSOCKET_PERMISSIONS:
                uncovered.append(route_name(route))
            continue
        if not isinstance(route, APIRoute) or route_permission(route) is None:
            uncovered.append(route_name(route))
    assert uncovered == []


async def test_public_routes_need_no_permission(app: FastAPI) -> None:
    for route in all_routes(app):
        if route.path in PUBLIC_ROUTES and isinstance(route, APIRoute):
            assert route_permission(route) is None, route_name(route)


@pytest.mark.parametrize(("path", "permission"), sorted(WEBSOCKET_PERMISSIONS.items()))
async def test_websocket_handlers_check_their_permission(app: FastAPI, path: str, permission: Permission) -> None:
    (route,) = [r for r in all_routes(app) if isinstance(r, APIWebSocketRoute) and r.path == path]
    source = inspect.getsource(route.endpoint)
    assert f"websocket_caller(websocket, Permission.{permission.name})" in source


def test_read_routes_need_the_permission_they_name(tmp_path: Path) -> None:
    from liveresponse.server.api import devices, sessions

    (list_devices,) = [r for r in devices.router.routes if r.path == "/api/v1/devices"]
    assert route_permission(list_devices) is P.DEVICES_READ
    opens = [r for r in sessions.router.routes if r.path == "/api/v1/sessions" and "POST" in r.methods]
    assert [route_permission(r) for r in opens] == [P.LIVE_RESPONSE_BASIC]


# -- without a credential (tier 2, in memory) ----------------------------------------------


def concrete(path: str) -> str:
    parts = [("x_1" if part.startswith("{") else part) for part in path.split("/")]
    return "/".join(parts)


async def test_get_without_a_token_is_401(app: FastAPI) -> None:
    gets = [
        r for r in all_routes(app)
        if "GET" in (getattr(r, "methods", None) or set()) and r.path not in PUBLIC_ROUTES
    ]  # fmt: skip
    assert len(gets) >= 5
    wrong = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://lr.test") as client:
        for route in gets:
            for headers in ({}, {"authorization": "Bearer lrt_not-a-real-token"}, {"authorization": "Basic x"}):
                response = await client.get(concrete(route.path), headers=headers)
                is_json = response.headers.get("content-type") == "application/json"
                body = response.json() if is_json else None
                code = body["error"]["code"] if isinstance(body, dict) and "error" in body else None
                if (response.status_code, code) != (401, "unauthenticated"):
                    wrong.append(f"GET {route.path} {headers or 'no header'}: {response.status_code} {code}")
                elif not body["error"]["message"]:
                    wrong.append(f"GET {route.path}: 401 without a message")
    assert wrong == []


async def test_missing_permission_is_403_named_and_audited(app: FastAPI) -> None:
    from liveresponse.server.credentials import token_hash
    from liveresponse.server.store.store import Store

    store: Store = app.state.lr.store
    tenant = await store.ensure_tenant()
    viewer = await store.add_user(tenant.id, "vera", "viewer", None, "test")
    await store.add_token(viewer.id, "t", token_hash("lrt_viewer"), None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://lr.test") as client:
        headers = {"authorization": "Bearer lrt_viewer"}
        assert (await client.get("/api/v1/devices", headers=headers)).status_code == 200
        response = await client.get("/api/v1/sessions", headers=headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["permission"]) == ("permission_denied", "live_response.basic")
    assert "live_response.basic" in error["message"]
    denials = [r for r in await store.audit_records() if r.outcome == "denied"]
    assert [(r.actor, r.event) for r in denials] == [("vera", "denied")]


async def test_health_is_public(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://lr.test") as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

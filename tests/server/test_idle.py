"""Idle sessions end, with a warning a minute before (SPEC §6), on an injected clock. Tier 2."""

from __future__ import annotations

import asyncio
from typing import Any

from liveresponse.server.idle import IdleReaper, warn_after_s
from liveresponse.server.store.models import Command
from tests.server.conftest import World


def listen(world: World, session_id: str) -> asyncio.Queue[dict[str, Any]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    world.state.dispatcher.listeners.setdefault(session_id, set()).add(queue)
    return queue


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def open_session(world: World, headers: dict[str, str], device_id: str) -> dict[str, Any]:
    response = await world.http.post("/api/v1/sessions", json={"device": device_id}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def reaper(world: World) -> IdleReaper:
    found: IdleReaper = world.app.state.idle
    assert found.clock is world.clock  # the app's own reaper, on the injected clock
    return found


def test_warning_time() -> None:
    assert warn_after_s(300) == 240
    assert warn_after_s(60) == 30
    assert warn_after_s(4) == 2


async def test_warns_once_a_minute_before_then_ends(world: World) -> None:
    alice = await world.user("alice", "admin")
    device = await world.device()
    session = await open_session(world, alice, device.id)
    events = listen(world, session["id"])
    idle = reaper(world)
    world.clock.advance(239)
    assert await idle.sweep() == []
    assert drain(events) == []
    world.clock.advance(2)  # 241 s idle: inside the last minute
    await idle.sweep()
    world.clock.advance(10)
    await idle.sweep()  # a second sweep in the same quiet spell warns no more
    (warning,) = drain(events)
    assert warning["type"] == "notice"
    assert f"session {session['id']} ends in 59 s without activity (idle_timeout_s=300)" in warning["message"]
    world.clock.advance(50)  # 301 s
    assert await idle.sweep() == [session["id"]]
    assert drain(events) == [{"type": "session_ended", "reason": "idle timeout after 300 s"}]
    listed = (await world.http.get(f"/api/v1/sessions/{session['id']}", headers=alice)).json()
    assert (listed["status"], listed["end_reason"]) == ("ended", "idle timeout after 300 s")
    closes = [r for r in await world.store.audit_records() if r.event == "session.close"]
    assert [(r.actor, r.outcome) for r in closes] == [("server", "success")]
    # The slot is free again.
    assert (await world.http.post("/api/v1/sessions", json={"device": device.id}, headers=alice)).status_code == 200


async def test_a_command_is_activity(world: World) -> None:
    alice = await world.user("alice", "admin")
    device = await world.device()
    session = await open_session(world, alice, device.id)
    events = listen(world, session["id"])
    idle = reaper(world)
    world.clock.advance(250)
    await idle.sweep()
    assert [e["type"] for e in drain(events)] == ["notice"]
    # A command logged now (the dispatcher's 'running' row) moves the session's activity to now.
    row = Command(
        id="cmd_0000000000000001",
        tenant_id=world.tenant_id,
        session_id=session["id"],
        user_name="alice",
        device_name=device.name,
        command_line="dir",
        command="dir",
        started_at=world.clock.now,
        status="running",
    )
    await world.store.add_command(row, active=True)
    world.clock.advance(200)
    assert await idle.sweep() == []
    assert drain(events) == []
    world.clock.advance(50)  # a new quiet spell gets its own warning
    await idle.sweep()
    assert [e["type"] for e in drain(events)] == ["notice"]
    world.clock.advance(60)
    assert await idle.sweep() == [session["id"]]


async def test_a_running_command_or_transfer_keeps_the_session_open(world: World) -> None:
    alice = await world.user("alice", "admin")
    device = await world.device()
    session = await open_session(world, alice, device.id)
    idle = reaper(world)
    busy = {session["id"]}
    world.state.dispatcher.busy_sessions = lambda: busy  # type: ignore[method-assign]
    for _ in range(10):  # an hour-long getfile
        world.clock.advance(360)
        assert await idle.sweep() == []
    stored = await world.store.session(session["id"])
    assert stored is not None and stored.ended_at is None and stored.last_activity_at == world.clock.now
    busy.clear()  # it finished: the idle clock starts from its end
    world.clock.advance(299)
    assert await idle.sweep() == []
    world.clock.advance(2)
    assert await idle.sweep() == [session["id"]]


async def test_the_tenant_setting_decides(world: World) -> None:
    alice = await world.user("alice", "admin")
    device = await world.device()
    await world.store.set_setting(world.tenant_id, "idle_timeout_s", "30", "test")
    session = await open_session(world, alice, device.id)
    events = listen(world, session["id"])
    idle = reaper(world)
    world.clock.advance(16)
    await idle.sweep()
    assert "ends in 14 s" in drain(events)[0]["message"]
    world.clock.advance(15)
    assert await idle.sweep() == [session["id"]]
    assert drain(events) == [{"type": "session_ended", "reason": "idle timeout after 30 s"}]


async def test_zero_switches_the_idle_timeout_off(world: World) -> None:
    alice = await world.user("alice", "admin")
    device = await world.device()
    await world.store.set_setting(world.tenant_id, "idle_timeout_s", "0", "test")
    session = await open_session(world, alice, device.id)
    world.clock.advance(10**6)
    assert await reaper(world).sweep() == []
    stored = await world.store.session(session["id"])
    assert stored is not None and stored.ended_at is None

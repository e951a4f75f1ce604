"""The store contract (SPEC §6, §8, §9, §12), on SQLite and PostgreSQL (conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, select, text, update

from liveresponse.protocol.errors import NotFound, SessionRefused
from liveresponse.server.credentials import token_hash as sha256_hex
from liveresponse.server.settings_keys import SettingError
from liveresponse.server.store.migrations import alembic_config
from liveresponse.server.store.models import ApiToken, AuditRecord, Base, Command, Device, Session, User
from liveresponse.server.store.store import GENESIS_HASH, AuditEvent, Store

ACTOR = "test"
ISO_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


async def tenant_id(store: Store, name: str = "default") -> str:
    return (await store.ensure_tenant(name)).id


async def add_device(store: Store, tenant: str, name: str, device_id: str | None = None) -> Device:
    device = Device(
        id=device_id or f"dev_{name}",
        tenant_id=tenant,
        group_id=None,
        name=name,
        os="linux",
        device_type="workstation",
        public_key="pk",
        agent_version="0.1.0",
        enrolled_at=time.time(),
        last_seen=None,
    )
    async with store.tx() as db:
        db.add(device)
    return device


async def add_users(store: Store, tenant: str, count: int, prefix: str = "user") -> list[User]:
    return [await store.add_user(tenant, f"{prefix}{i:02d}", "responder", None, ACTOR) for i in range(count)]


async def open_count(store: Store, tenant: str) -> int:
    return len(await store.sessions(tenant, include_ended=False))


# -- schema ---------------------------------------------------------------------


async def test_migrate_twice_is_idempotent(store: Store) -> None:
    tenant = await tenant_id(store)
    await store.add_user(tenant, "alice", "admin", None, ACTOR)
    await store.migrate()
    await store.migrate()
    user = await store.user_by_name(tenant, "alice")
    assert user is not None and user.role == "admin"
    async with store.tx() as db:
        versions = (await db.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and head != "0001"  # the second migration exists, so this checks "upgraded to head"
    assert list(versions) == [head]


async def test_migrations_match_the_models(store: Store) -> None:
    def diff(conn: object) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))  # type: ignore[arg-type]

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


# -- tenants, users, tokens ---------------------------------------------------


async def test_tenant_round_trip(store: Store) -> None:
    first = await store.ensure_tenant("acme")
    again = await store.ensure_tenant("acme")
    assert again.id == first.id
    assert (await store.tenant_by_name("acme")).id == first.id
    with pytest.raises(NotFound):
        await store.tenant_by_name("nobody")


async def test_user_round_trip(store: Store) -> None:
    tenant = await tenant_id(store)
    user = await store.add_user(tenant, "alice", "responder", "hash", ACTOR)
    assert (await store.user(user.id)) is not None
    got = await store.user_by_name(tenant, "alice")
    assert got is not None
    assert (got.id, got.name, got.role, got.password_hash, got.tenant_id) == (
        user.id, "alice", "responder", "hash", tenant,
    )  # fmt: skip
    assert await store.user_by_name(tenant, "bob") is None
    assert [u.id for u in await store.user_by_name_any_tenant("alice")] == [user.id]


async def test_duplicate_user_is_a_conflict(store: Store) -> None:
    from liveresponse.protocol.errors import Conflict

    tenant = await tenant_id(store)
    await store.add_user(tenant, "alice", "responder", None, ACTOR)
    with pytest.raises(Conflict):
        await store.add_user(tenant, "alice", "admin", None, ACTOR)


async def test_token_owner(store: Store) -> None:
    tenant = await tenant_id(store)
    user = await store.add_user(tenant, "alice", "responder", None, ACTOR)
    now = time.time()
    await store.add_token(user.id, "cli", sha256_hex("live"), expires_at=now + 3600)
    await store.add_token(user.id, "forever", sha256_hex("forever"), expires_at=None)
    await store.add_token(user.id, "old", sha256_hex("expired"), expires_at=now - 1)
    owner = await store.token_owner(sha256_hex("live"), now)
    assert owner is not None and owner.id == user.id and owner.name == "alice"
    forever = await store.token_owner(sha256_hex("forever"), now + 10**9)
    assert forever is not None and forever.id == user.id
    assert await store.token_owner(sha256_hex("expired"), now) is None
    assert await store.token_owner(sha256_hex("unknown"), now) is None
    # the same live token is expired once its time has passed
    assert await store.token_owner(sha256_hex("live"), now + 3601) is None


async def test_revoked_token_has_no_owner(store: Store) -> None:
    tenant = await tenant_id(store)
    user = await store.add_user(tenant, "alice", "responder", None, ACTOR)
    token = await store.add_token(user.id, "cli", sha256_hex("secret"), expires_at=None)
    assert await store.token_owner(sha256_hex("secret"), time.time()) is not None
    async with store.tx() as db:
        await db.execute(update(ApiToken).where(ApiToken.id == token.id).values(revoked_at=time.time()))
    assert await store.token_owner(sha256_hex("secret"), time.time()) is None


# -- enrollment and devices -------------------------------------------------------


async def test_enroll_device_consumes_uses(store: Store) -> None:
    tenant = await tenant_id(store)
    group = await store.add_group(tenant, "lab", "full", ACTOR)
    await store.add_enroll_token(tenant, group.id, sha256_hex("enr"), time.time() + 3600, 1, ACTOR)
    device = await store.enroll_device(sha256_hex("enr"), "host-a", "linux", "workstation", "pk", "0.1.0")
    assert device is not None
    assert (device.tenant_id, device.group_id, device.name, device.agent_version) == (
        tenant, group.id, "host-a", "0.1.0",
    )  # fmt: skip
    stored = await store.device(device.id)
    assert stored is not None and stored.name == "host-a"
    assert await store.enroll_device(sha256_hex("enr"), "host-b", "linux", "workstation", "pk2", "0.1.0") is None
    assert [d.name for d in await store.devices(tenant)] == ["host-a"]
    outcomes = [(r.event, r.outcome) for r in await store.audit_records() if r.event == "device.enroll"]
    assert outcomes == [("device.enroll", "success"), ("device.enroll", "denied")]


async def test_enroll_with_several_uses(store: Store) -> None:
    tenant = await tenant_id(store)
    await store.add_enroll_token(tenant, None, sha256_hex("enr"), time.time() + 3600, 2, ACTOR)
    results = [
        await store.enroll_device(sha256_hex("enr"), f"h{i}", "linux", "server", "pk", "0.1.0") for i in range(3)
    ]
    assert [r is not None for r in results] == [True, True, False]


async def test_enroll_with_expired_or_unknown_token(store: Store) -> None:
    tenant = await tenant_id(store)
    await store.add_enroll_token(tenant, None, sha256_hex("old"), time.time() - 1, 5, ACTOR)
    assert await store.enroll_device(sha256_hex("old"), "h", "linux", "workstation", "pk", "0.1.0") is None
    assert await store.enroll_device(sha256_hex("nope"), "h", "linux", "workstation", "pk", "0.1.0") is None
    assert await store.devices(tenant) == []


async def test_find_device(store: Store) -> None:
    tenant = await tenant_id(store)
    other = await tenant_id(store, "other")
    device = await add_device(store, tenant, "Host-A")
    await add_device(store, other, "host-b")
    assert (await store.find_device(tenant, device.id)).id == device.id
    assert (await store.find_device(tenant, "host-a")).id == device.id
    assert (await store.find_device(tenant, "HOST-A")).id == device.id
    with pytest.raises(NotFound) as info:
        await store.find_device(tenant, "host-c")
    assert "host-c" in info.value.message
    with pytest.raises(NotFound):
        await store.find_device(tenant, "host-b")  # another tenant's device is invisible


async def test_find_device_newest_enrollment_wins_a_name_tie(store: Store) -> None:
    tenant = await tenant_id(store)
    await add_device(store, tenant, "box", device_id="dev_old")
    await asyncio.sleep(0.01)
    await add_device(store, tenant, "BOX", device_id="dev_new")
    assert (await store.find_device(tenant, "box")).id == "dev_new"


# -- settings -----------------------------------------------------------------------


async def test_settings_defaults(store: Store) -> None:
    tenant = await tenant_id(store)
    assert await store.settings(tenant) == {
        "live_response_enabled": False,
        "live_response_servers_enabled": False,
        "unsigned_scripts_allowed": False,
        "max_sessions": 10,
        "sessions_per_user": 1,
        "sessions_per_device": 1,
        "idle_timeout_s": 300,
        "command_timeout_s": 600,
        "long_command_timeout_s": 1800,
        "getfile_max_bytes": 3221225472,
        "fileinfo_hash_max_bytes": 10737418240,
        "library_max_bytes": 262144000,
    }


async def test_set_setting(store: Store) -> None:
    tenant = await tenant_id(store)
    other = await tenant_id(store, "other")
    assert await store.set_setting(tenant, "live_response_enabled", "TRUE", ACTOR) is True
    assert await store.set_setting(tenant, "max_sessions", "3", ACTOR) == 3
    assert await store.set_setting(tenant, "max_sessions", "4", ACTOR) == 4
    values = await store.settings(tenant)
    assert (values["live_response_enabled"], values["max_sessions"]) == (True, 4)
    assert (await store.settings(other))["max_sessions"] == 10
    changes = [json.loads(r.detail_json) for r in await store.audit_records() if r.event == "settings.set"]
    assert changes[-1] == {"key": "max_sessions", "old": "3", "new": "4"}


@pytest.mark.parametrize(
    ("key", "value"),
    [("no_such_key", "1"), ("live_response_enabled", "maybe"), ("max_sessions", "ten"), ("max_sessions", "-1")],
)
async def test_set_setting_refuses_bad_values(store: Store, key: str, value: str) -> None:
    tenant = await tenant_id(store)
    before = len(await store.audit_records())
    with pytest.raises(SettingError):
        await store.set_setting(tenant, key, value, ACTOR)
    assert (await store.settings(tenant))["max_sessions"] == 10
    assert len(await store.audit_records()) == before


# -- sessions and their limits (SPEC §6) ----------------------------------------------


async def test_sessions_per_device(store: Store) -> None:
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    alice, bob = await add_users(store, tenant, 2)
    first = await store.open_session(tenant, device, alice, "/")
    with pytest.raises(SessionRefused) as info:
        await store.open_session(tenant, device, bob, "/")
    err = info.value
    assert f"session {first.id} of user {alice.name}, open since " in err.message
    assert re.search(rf"since {ISO_RE}", err.message)
    assert err.fields["holder"] == alice.name
    assert err.fields["holder_session"] == first.id
    assert err.fields["limit"] == "sessions_per_device"
    assert re.fullmatch(ISO_RE, err.fields["since"])
    assert err.code == "session_refused"
    assert await open_count(store, tenant) == 1


async def test_sessions_per_device_setting_is_honoured(store: Store) -> None:
    tenant = await tenant_id(store)
    await store.set_setting(tenant, "sessions_per_device", "2", ACTOR)
    device = await add_device(store, tenant, "host-a")
    a, b, c = await add_users(store, tenant, 3)
    await store.open_session(tenant, device, a, "/")
    await store.open_session(tenant, device, b, "/")
    with pytest.raises(SessionRefused) as info:
        await store.open_session(tenant, device, c, "/")
    assert info.value.fields["limit"] == "sessions_per_device"


async def test_sessions_per_user(store: Store) -> None:
    tenant = await tenant_id(store)
    d1 = await add_device(store, tenant, "host-a")
    d2 = await add_device(store, tenant, "host-b")
    (alice,) = await add_users(store, tenant, 1)
    first = await store.open_session(tenant, d1, alice, "/")
    with pytest.raises(SessionRefused) as info:
        await store.open_session(tenant, d2, alice, "/")
    assert info.value.fields["limit"] == "sessions_per_user"
    assert info.value.fields["holder_session"] == first.id
    assert f"user {alice.name} already has 1 open session(s)" in info.value.message
    await store.set_setting(tenant, "sessions_per_user", "2", ACTOR)
    await store.open_session(tenant, d2, alice, "/")
    assert await open_count(store, tenant) == 2


async def test_max_sessions(store: Store) -> None:
    tenant = await tenant_id(store)
    await store.set_setting(tenant, "max_sessions", "2", ACTOR)
    devices = [await add_device(store, tenant, f"host-{i}") for i in range(3)]
    users = await add_users(store, tenant, 3)
    oldest = await store.open_session(tenant, devices[0], users[0], "/")
    await store.open_session(tenant, devices[1], users[1], "/")
    with pytest.raises(SessionRefused) as info:
        await store.open_session(tenant, devices[2], users[2], "/")
    assert info.value.fields["limit"] == "max_sessions"
    assert info.value.fields["holder_session"] == oldest.id
    assert "limit max_sessions=2" in info.value.message


async def test_max_sessions_is_per_tenant(store: Store) -> None:
    tenant = await tenant_id(store)
    other = await tenant_id(store, "other")
    await store.set_setting(tenant, "max_sessions", "1", ACTOR)
    await store.set_setting(other, "max_sessions", "1", ACTOR)
    (u1,) = await add_users(store, tenant, 1)
    (u2,) = await add_users(store, other, 1)
    await store.open_session(tenant, await add_device(store, tenant, "a"), u1, "/")
    await store.open_session(other, await add_device(store, other, "b"), u2, "/")
    assert (await open_count(store, tenant), await open_count(store, other)) == (1, 1)


async def test_end_session_frees_the_slot(store: Store) -> None:
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    alice, bob = await add_users(store, tenant, 2)
    first = await store.open_session(tenant, device, alice, "/tmp")
    ended = await store.end_session(first.id, "user", alice.name)
    assert ended is not None and ended.ended_at is not None and ended.end_reason == "user"
    second = await store.open_session(tenant, device, bob, "/")
    assert second.id != first.id
    again = await store.end_session(first.id, "again", alice.name)  # ending twice changes nothing
    assert again is not None and again.end_reason == "user"
    assert await store.end_session("ses_missing", "user", ACTOR) is None
    rows = await store.sessions(tenant, include_ended=True)
    assert [(s.id, u.name, d.name) for s, u, d in rows] == [
        (first.id, alice.name, "host-a"),
        (second.id, bob.name, "host-a"),
    ]
    assert [s.id for s, _u, _d in await store.sessions(tenant, include_ended=False)] == [second.id]
    closes = [r for r in await store.audit_records() if r.event == "session.close"]
    assert len(closes) == 1


async def test_race_on_one_device_gives_exactly_one_session(store: Store) -> None:
    """SPEC §6: 50 simultaneous attempts on one device give exactly one session."""
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    await store.set_setting(tenant, "max_sessions", "100", ACTOR)
    users = await add_users(store, tenant, 50)
    results = await asyncio.gather(*(store.open_session(tenant, device, u, "/") for u in users), return_exceptions=True)
    sessions = [r for r in results if isinstance(r, Session)]
    refused = [r for r in results if isinstance(r, SessionRefused)]
    others = [r for r in results if not isinstance(r, Session | SessionRefused)]
    assert others == []
    assert (len(sessions), len(refused)) == (1, 49)
    assert {r.fields["limit"] for r in refused} == {"sessions_per_device"}
    assert await open_count(store, tenant) == 1
    assert await store.verify_audit() == []


async def test_race_on_max_sessions_gives_exactly_the_limit(store: Store) -> None:
    tenant = await tenant_id(store)
    devices = [await add_device(store, tenant, f"host-{i:02d}") for i in range(20)]
    users = await add_users(store, tenant, 20)
    assert (await store.settings(tenant))["max_sessions"] == 10
    results = await asyncio.gather(
        *(store.open_session(tenant, d, u, "/") for d, u in zip(devices, users, strict=True)),
        return_exceptions=True,
    )
    sessions = [r for r in results if isinstance(r, Session)]
    refused = [r for r in results if isinstance(r, SessionRefused)]
    assert [r for r in results if not isinstance(r, Session | SessionRefused)] == []
    assert (len(sessions), len(refused)) == (10, 10)
    assert {r.fields["limit"] for r in refused} == {"max_sessions"}
    assert await open_count(store, tenant) == 10
    assert await store.verify_audit() == []


# -- audit chain (SPEC §9) ------------------------------------------------------------


async def seed_audit(store: Store) -> str:
    """Four audit records: user.add, group.add, settings.set, user.add."""
    tenant = await tenant_id(store)
    await store.add_user(tenant, "alice", "admin", None, ACTOR)
    await store.add_group(tenant, "lab", "full", ACTOR)
    await store.set_setting(tenant, "max_sessions", "5", ACTOR)
    await store.add_user(tenant, "bob", "viewer", None, ACTOR)
    return tenant


async def test_audit_chain_is_clean(store: Store) -> None:
    tenant = await seed_audit(store)
    await store.audit(AuditEvent(tenant, ACTOR, "denied", "denied", {"needs": "users.manage"}))
    records = await store.audit_records()
    assert [(r.seq, r.event) for r in records] == [
        (1, "user.add"), (2, "group.add"), (3, "settings.set"), (4, "user.add"), (5, "denied"),
    ]  # fmt: skip
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert await store.verify_audit() == []


async def test_audit_records_by_tenant(store: Store) -> None:
    tenant = await seed_audit(store)
    other = await tenant_id(store, "other")
    await store.add_user(other, "carol", "admin", None, ACTOR)
    assert [r.seq for r in await store.audit_records(other)] == [5]
    assert len(await store.audit_records(tenant)) == 4
    assert len(await store.audit_records(limit=2)) == 2


async def test_edited_record_is_named(store: Store) -> None:
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(detail_json='{"group": "lab", "x": 1}'))
    assert await store.verify_audit() == ["record 2 (group.add) was edited: its hash does not match"]


async def test_edited_actor_is_named(store: Store) -> None:
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(actor="someone-else"))
    assert await store.verify_audit() == ["record 4 (user.add) was edited: its hash does not match"]


async def test_deleted_middle_record_is_reported(store: Store) -> None:
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    assert await store.verify_audit() == [
        "record 2 is missing (next present is 3)",
        "record 3 does not follow its predecessor (deleted or reordered)",
    ]


async def test_deleted_first_record_is_reported(store: Store) -> None:
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(delete(AuditRecord).where(AuditRecord.seq == 1))
    problems = await store.verify_audit()
    assert problems[:2] == [
        "record 1 is missing (next present is 2)",
        "record 2 does not follow its predecessor (deleted or reordered)",
    ]


async def test_deleted_last_record_is_reported(store: Store) -> None:
    """SPEC §9: verify detects *any* deleted record, the newest one too."""
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(delete(AuditRecord).where(AuditRecord.seq == 4))
    problems = await store.verify_audit()
    assert problems != [], "deleting the newest audit record goes unnoticed"
    assert any("record 4" in p for p in problems), problems


async def test_reordered_records_are_reported(store: Store) -> None:
    await seed_audit(store)
    async with store.tx() as db:
        await db.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(seq=-2))
        await db.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(seq=2))
        await db.execute(update(AuditRecord).where(AuditRecord.seq == -2).values(seq=3))
    assert [r.event for r in await store.audit_records()] == ["user.add", "settings.set", "group.add", "user.add"]
    # seq is inside each hash, so both moved records read as edited, and every link from 2 on is broken
    assert await store.verify_audit() == [
        "record 2 does not follow its predecessor (deleted or reordered)",
        "record 2 (settings.set) was edited: its hash does not match",
        "record 3 does not follow its predecessor (deleted or reordered)",
        "record 3 (group.add) was edited: its hash does not match",
        "record 4 does not follow its predecessor (deleted or reordered)",
    ]


# -- command log (SPEC §9) ------------------------------------------------------------


async def test_command_log_round_trip(store: Store) -> None:
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    (alice,) = await add_users(store, tenant, 1)
    session = await store.open_session(tenant, device, alice, "/")
    started = session.started_at + 5
    cmd = Command(
        id="cmd_0000000000000001",
        tenant_id=tenant,
        session_id=session.id,
        user_name=alice.name,
        device_name=device.name,
        command_line="dir /etc -output json",
        command="dir",
        args_json=json.dumps({"path": "/etc"}),
        started_at=started,
        status="running",
    )
    audit = AuditEvent(tenant, alice.name, "command", "success", {"command": cmd.id})
    await store.add_command(cmd, audit=audit, active=True)
    got = await store.command(cmd.id)
    assert got is not None
    assert (got.status, got.command_line, got.output, got.ended_at, got.output_bytes) == (
        "running", "dir /etc -output json", None, None, 0,
    )  # fmt: skip
    live = await store.session(session.id)
    assert live is not None and live.last_activity_at == started

    await store.finish_command(
        cmd.id,
        session.id,
        {"last_activity_at": started + 1, "cwd": "/etc"},
        status="completed",
        ended_at=started + 1,
        output='[{"name": "passwd"}]',
        output_bytes=20,
    )
    done = await store.command(cmd.id)
    assert done is not None
    assert (done.status, done.ended_at, done.output, done.output_bytes, done.errors) == (
        "completed", started + 1, '[{"name": "passwd"}]', 20, None,
    )  # fmt: skip
    after = await store.session(session.id)
    assert after is not None and (after.cwd, after.last_activity_at) == ("/etc", started + 1)

    second = Command(
        id="cmd_0000000000000002",
        tenant_id=tenant,
        session_id=session.id,
        user_name=alice.name,
        device_name=device.name,
        command_line="fileinfo /nope",
        command="fileinfo",
        started_at=started + 2,
        status="pending",
    )
    await store.add_command(second)
    assert [c.id for c in await store.commands(tenant)] == [cmd.id, second.id]
    assert [c.id for c in await store.commands(tenant, session_id=session.id, limit=1)] == [cmd.id]
    assert await store.commands(tenant, session_id="ses_other") == []
    assert await store.commands(await tenant_id(store, "other")) == []
    assert await store.command("cmd_missing") is None
    events = [r.event for r in await store.audit_records()]
    assert events.count("command") == 1
    assert await store.verify_audit() == []


async def test_touch_device(store: Store) -> None:
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    before = time.time()
    await store.touch_device(device.id, agent_version="0.2.0", name="host-renamed")
    got = await store.device(device.id)
    assert got is not None
    assert (got.agent_version, got.name) == ("0.2.0", "host-renamed")
    assert got.last_seen is not None and got.last_seen >= before


async def test_open_sessions_counted_in_sql(store: Store) -> None:
    """The limits read the same rows the list shows (no cached count)."""
    tenant = await tenant_id(store)
    device = await add_device(store, tenant, "host-a")
    (alice,) = await add_users(store, tenant, 1)
    await store.open_session(tenant, device, alice, "/")
    async with store.tx() as db:
        count = (await db.execute(select(func.count()).select_from(Session).where(Session.ended_at.is_(None)))).scalar()
    assert count == 1

"""The store's operations. One method is one transaction.

Limits and chains that must hold under concurrency (SPEC §6, §9) are decided
inside one transaction that first takes a lock: on PostgreSQL a row lock
(``SELECT ... FOR UPDATE``) on the tenant row or the audit lock row, on SQLite
the database write lock (``BEGIN IMMEDIATE``, engine.py). DR-3.

Inside ``tx()`` and ``read()`` await nothing but the session's own calls: on
SQLite they run inline (DR-10), and a transaction suspended on anything else
would hold the write lock while another coroutine waits for it on the same thread.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from liveresponse.protocol.errors import Conflict, NotFound, SessionRefused
from liveresponse.server.ids import new_id
from liveresponse.server.settings_keys import SETTING_KEYS, encode_value, parse_value
from liveresponse.server.store.engine import is_sqlite, make_async_engine, make_sqlite_engine
from liveresponse.server.store.governance import GovernanceOps
from liveresponse.server.store.migrations import upgrade_to_head
from liveresponse.server.store.models import (
    ApiToken,
    AuditRecord,
    Command,
    Device,
    DeviceGroup,
    EnrollToken,
    LockRow,
    Session,
    Setting,
    Tenant,
    User,
)
from liveresponse.server.timestamps import iso_seconds

DEFAULT_TENANT = "default"
GENESIS_HASH = "0" * 64


def audit_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """Each audit record hashes its predecessor's hash and its own canonical JSON."""
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def audit_fields(rec: AuditRecord) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "tenant_id": rec.tenant_id,
        "at": rec.at,
        "actor": rec.actor,
        "event": rec.event,
        "outcome": rec.outcome,
        "detail": json.loads(rec.detail_json),
    }


@dataclass(frozen=True)
class AuditEvent:
    tenant_id: str | None
    actor: str
    event: str
    outcome: str  # success | denied | failure | unknown (a remediation whose end the device did not report)
    detail: dict[str, Any]


class InlineSession:
    """The AsyncSession calls the store uses, over a synchronous SQLite session (DR-10).

    The coroutines never suspend, so a transaction runs start to end without
    another coroutine in between.
    """

    def __init__(self, session: OrmSession) -> None:
        self._session = session

    async def execute(self, statement: Any, params: Any = None) -> Any:
        return self._session.execute(statement, params)

    async def get(self, entity: Any, ident: Any, **kwargs: Any) -> Any:
        return self._session.get(entity, ident, **kwargs)

    def add(self, instance: Any) -> None:
        self._session.add(instance)

    async def flush(self) -> None:
        self._session.flush()

    def core(self, statement: Any) -> Any:
        return self._session.connection().execute(statement)


Tx = AsyncSession | InlineSession


class Store(GovernanceOps):
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_async_engine(url)  # PostgreSQL traffic; on SQLite only schema tools use it
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite = is_sqlite(url)
        if self._sqlite:
            self._write_engine = make_sqlite_engine(url, for_writes=True)
            self._read_engine = make_sqlite_engine(url, for_writes=False)
            self._sync_writes = sessionmaker(self._write_engine, expire_on_commit=False)
            self._sync_reads = sessionmaker(self._read_engine, expire_on_commit=False)

    async def migrate(self) -> None:
        if self._sqlite:
            with self._write_engine.connect() as conn:
                upgrade_to_head(conn)
                conn.commit()
            return
        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._sqlite:
            self._write_engine.dispose()
            self._read_engine.dispose()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """A write transaction (serialised with other writers, DR-3)."""
        if self._sqlite:
            with self._sync_writes() as session, session.begin():
                yield InlineSession(session)
            return
        async with self._sessions() as db, db.begin():
            yield db

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A read-only transaction: a consistent snapshot that does not wait for writers."""
        if self._sqlite:
            with self._sync_reads() as session, session.begin():
                yield InlineSession(session)
            return
        async with self._sessions() as db, db.begin():
            yield db

    @staticmethod
    async def _core(db: Tx, statement: Any) -> Any:
        """Run a Core statement on the transaction's connection: no ORM unit of work (the hot paths)."""
        if isinstance(db, InlineSession):
            return db.core(statement)
        return await (await db.connection()).execute(statement)

    # -- audit (SPEC §9) --------------------------------------------------

    async def _append_audit(self, db: Tx, ev: AuditEvent) -> None:
        locked = select(LockRow.head).where(LockRow.name == "audit").with_for_update()
        head = (await self._core(db, locked)).scalar_one()
        if head is not None:  # the head kept beside the chain saves reading the newest record
            head_seq, _, prev = head.partition(":")
            seq = int(head_seq) + 1
        else:
            newest = select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            last = (await self._core(db, newest)).one_or_none()
            seq = 1 if last is None else last.seq + 1
            prev = GENESIS_HASH if last is None else last.hash
        record = {
            "seq": seq,
            "tenant_id": ev.tenant_id,
            "at": time.time(),
            "actor": ev.actor,
            "event": ev.event,
            "outcome": ev.outcome,
            "detail_json": json.dumps(ev.detail, sort_keys=True, ensure_ascii=False),
            "prev_hash": prev,
        }
        record["hash"] = audit_hash(prev, audit_fields(AuditRecord(**record)))
        await self._core(db, insert(AuditRecord).values(**record))
        await self._core(db, update(LockRow).where(LockRow.name == "audit").values(head=f"{seq}:{record['hash']}"))

    async def audit(self, ev: AuditEvent) -> None:
        async with self.tx() as db:
            await self._append_audit(db, ev)

    async def audit_records(self, tenant_id: str | None = None, limit: int = 1000) -> list[AuditRecord]:
        async with self.read() as db:
            q = select(AuditRecord).order_by(AuditRecord.seq)
            if tenant_id is not None:
                q = q.where(AuditRecord.tenant_id == tenant_id)
            return list((await db.execute(q.limit(limit))).scalars())

    async def verify_audit(self) -> list[str]:
        """Problems in the chain, each naming the record; empty when intact."""
        problems: list[str] = []
        prev = GENESIS_HASH
        expected_seq = 1
        async with self.read() as db:
            rows = (await db.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars()
            for rec in rows:
                if rec.seq != expected_seq:
                    problems.append(f"record {expected_seq} is missing (next present is {rec.seq})")
                if rec.prev_hash != prev:
                    problems.append(f"record {rec.seq} does not follow its predecessor (deleted or reordered)")
                if audit_hash(rec.prev_hash, audit_fields(rec)) != rec.hash:
                    problems.append(f"record {rec.seq} ({rec.event}) was edited: its hash does not match")
                prev = rec.hash
                expected_seq = rec.seq + 1
            lock = (await db.execute(select(LockRow).where(LockRow.name == "audit"))).scalar_one()
        if lock.head is not None:
            head_seq, _, head_hash = lock.head.partition(":")
            if int(head_seq) >= expected_seq:
                span = (
                    f"record {head_seq} is"
                    if int(head_seq) == expected_seq
                    else f"records {expected_seq} to {head_seq} are"
                )
                problems.append(f"{span} missing at the end (the chain's newest was {head_seq})")
            elif int(head_seq) == expected_seq - 1 and head_hash != prev:
                problems.append(f"record {head_seq} is not the record the chain ended with (replaced)")
        return problems

    # -- tenants, users, tokens ---------------------------------------------

    async def ensure_tenant(self, name: str = DEFAULT_TENANT) -> Tenant:
        async with self.tx() as db:
            tenant = (await db.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none()
            if tenant is None:
                tenant = Tenant(id=new_id("ten"), name=name, created_at=time.time())
                db.add(tenant)
            return tenant

    async def tenant_by_name(self, name: str) -> Tenant:
        async with self.read() as db:
            tenant = (await db.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"no tenant named {name!r}")
        return tenant

    async def add_user(
        self,
        tenant_id: str,
        name: str,
        role: str,
        password_hash: str | None,
        actor: str,
        group_ids: list[str] | None = None,
    ) -> User:
        async with self.tx() as db:
            exists = await db.execute(select(User).where(User.tenant_id == tenant_id, User.name == name))
            if exists.scalar_one_or_none() is not None:
                raise Conflict(f"user {name!r} already exists")
            user = User(
                id=new_id("usr"),
                tenant_id=tenant_id,
                name=name,
                role=role,
                password_hash=password_hash,
                created_at=time.time(),
                group_ids=None if group_ids is None else json.dumps(sorted(group_ids)),
            )
            db.add(user)
            detail = {"user": name, "role": role, "groups": group_ids}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "user.add", "success", detail))
            return user

    async def user_by_name(self, tenant_id: str, name: str) -> User | None:
        async with self.read() as db:
            q = select(User).where(User.tenant_id == tenant_id, User.name == name)
            return (await db.execute(q)).scalar_one_or_none()

    async def user_by_name_any_tenant(self, name: str) -> list[User]:
        async with self.read() as db:
            return list((await db.execute(select(User).where(User.name == name))).scalars())

    async def user(self, user_id: str) -> User | None:
        async with self.read() as db:
            return await db.get(User, user_id)

    async def add_token(self, user_id: str, name: str, token_hash: str, expires_at: float | None) -> ApiToken:
        async with self.tx() as db:
            token = ApiToken(
                id=new_id("tok"),
                user_id=user_id,
                name=name,
                token_hash=token_hash,
                created_at=time.time(),
                expires_at=expires_at,
            )
            db.add(token)
            return token

    async def token_owner(self, token_hash: str, now: float) -> User | None:
        async with self.read() as db:
            q = select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == token_hash)
            row = (await db.execute(q)).one_or_none()
        if row is None:
            return None
        token, user = row
        if token.revoked_at is not None or (token.expires_at is not None and token.expires_at < now):
            return None
        return user

    # -- groups, enrollment, devices ----------------------------------------

    async def add_group(self, tenant_id: str, name: str, level: str, actor: str) -> DeviceGroup:
        async with self.tx() as db:
            q = select(DeviceGroup).where(DeviceGroup.tenant_id == tenant_id, DeviceGroup.name == name)
            if (await db.execute(q)).scalar_one_or_none() is not None:
                raise Conflict(f"device group {name!r} already exists")
            group = DeviceGroup(id=new_id("grp"), tenant_id=tenant_id, name=name, remediation_level=level)
            db.add(group)
            detail = {"group": name, "remediation_level": level}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "group.add", "success", detail))
            return group

    async def group_by_name(self, tenant_id: str, name: str) -> DeviceGroup | None:
        async with self.read() as db:
            q = select(DeviceGroup).where(DeviceGroup.tenant_id == tenant_id, DeviceGroup.name == name)
            return (await db.execute(q)).scalar_one_or_none()

    async def group(self, group_id: str | None) -> DeviceGroup | None:
        if group_id is None:
            return None
        async with self.read() as db:
            return await db.get(DeviceGroup, group_id)

    async def add_enroll_token(
        self,
        tenant_id: str,
        group_id: str | None,
        secret_hash: str,
        expires_at: float,
        uses: int,
        actor: str,
        device_type: str | None = None,
    ) -> EnrollToken:
        async with self.tx() as db:
            tok = EnrollToken(
                id=new_id("enr"),
                tenant_id=tenant_id,
                group_id=group_id,
                secret_hash=secret_hash,
                created_at=time.time(),
                expires_at=expires_at,
                uses_left=uses,
                device_type=device_type,
            )
            db.add(tok)
            detail = {"enroll_token": tok.id, "uses": uses, "expires_at": expires_at, "device_type": device_type}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "enroll_token.create", "success", detail))
            return tok

    async def enroll_device(
        self, secret_hash: str, name: str, os_name: str, device_type: str, public_key: str, agent_version: str
    ) -> Device | None:
        """Consume one use of an enrollment token and create the device; None when the token is not valid."""
        now = time.time()
        async with self.tx() as db:
            q = select(EnrollToken).where(EnrollToken.secret_hash == secret_hash).with_for_update()
            tok = (await db.execute(q)).scalar_one_or_none()
            if tok is None or tok.uses_left <= 0 or tok.expires_at < now:
                detail = {"device": name, "reason": "unknown, used up or expired token"}
                await self._append_audit(db, AuditEvent(None, "agent", "device.enroll", "denied", detail))
                return None
            tok.uses_left -= 1
            device = Device(
                id=new_id("dev"),
                tenant_id=tok.tenant_id,
                group_id=tok.group_id,
                name=name,
                os=os_name,
                device_type=tok.device_type or device_type,  # the token's type wins over the agent's report
                public_key=public_key,
                agent_version=agent_version,
                enrolled_at=now,
                last_seen=None,
            )
            db.add(device)
            detail = {"device": device.id, "name": name, "enroll_token": tok.id}
            await self._append_audit(db, AuditEvent(tok.tenant_id, "agent", "device.enroll", "success", detail))
            return device

    async def device(self, device_id: str) -> Device | None:
        async with self.read() as db:
            return await db.get(Device, device_id)

    async def devices(self, tenant_id: str) -> list[Device]:
        async with self.read() as db:
            q = select(Device).where(Device.tenant_id == tenant_id).order_by(Device.name, Device.id)
            return list((await db.execute(q)).scalars())

    async def find_device(self, tenant_id: str, id_or_name: str) -> Device:
        """A device by id, else by host name (SPEC §3); the newest enrollment wins a name tie."""
        async with self.read() as db:
            q = select(Device).where(Device.tenant_id == tenant_id, Device.id == id_or_name)
            device = (await db.execute(q)).scalar_one_or_none()
            if device is None:
                q = (
                    select(Device)
                    .where(Device.tenant_id == tenant_id, func.lower(Device.name) == id_or_name.lower())
                    .order_by(Device.enrolled_at.desc())
                )
                device = (await db.execute(q)).scalars().first()
        if device is None:
            raise NotFound(f"no device with id or host name {id_or_name!r}; 'lr devices' lists them")
        return device

    async def touch_device(self, device_id: str, agent_version: str | None = None, name: str | None = None) -> None:
        values: dict[str, Any] = {"last_seen": time.time()}
        if agent_version is not None:
            values["agent_version"] = agent_version
        if name is not None:
            values["name"] = name
        async with self.tx() as db:
            await db.execute(update(Device).where(Device.id == device_id).values(**values))

    # -- settings -----------------------------------------------------------

    async def settings(self, tenant_id: str) -> dict[str, Any]:
        values = {k: spec.default for k, spec in SETTING_KEYS.items()}
        async with self.read() as db:
            rows = (await db.execute(select(Setting).where(Setting.tenant_id == tenant_id))).scalars()
            for row in rows:
                if row.key in SETTING_KEYS:
                    values[row.key] = parse_value(row.key, row.value)
        return values

    async def set_setting(self, tenant_id: str, key: str, text: str, actor: str) -> Any:
        value = parse_value(key, text)
        async with self.tx() as db:
            row = await db.get(Setting, (tenant_id, key))
            old = None if row is None else row.value
            if row is None:
                db.add(Setting(tenant_id=tenant_id, key=key, value=encode_value(value)))
            else:
                row.value = encode_value(value)
            detail = {"key": key, "old": old, "new": encode_value(value)}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "settings.set", "success", detail))
        return value

    # -- sessions (SPEC §6) -------------------------------------------------

    async def open_session(self, tenant_id: str, device: Device, user: User, cwd: str) -> Session:
        """Open a session when every limit allows it, atomically (DR-3)."""
        now = time.time()
        async with self.tx() as db:
            await db.execute(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
            limits = await self._settings_in(db, tenant_id)
            open_q = select(Session, User).join(User, User.id == Session.user_id)
            open_q = open_q.where(Session.tenant_id == tenant_id, Session.ended_at.is_(None))
            open_rows: Sequence[Any] = (await db.execute(open_q.order_by(Session.started_at))).all()
            on_device = [(s, u) for s, u in open_rows if s.device_id == device.id]
            of_user = [(s, u) for s, u in open_rows if s.user_id == user.id]
            if len(on_device) >= limits["sessions_per_device"]:
                s, u = on_device[0]
                raise _limit_refusal(
                    f"device {device.name} already has {len(on_device)} session(s) (limit sessions_per_device="
                    f"{limits['sessions_per_device']}): session {s.id} of user {u.name}, open since "
                    f"{iso_seconds(s.started_at)}",
                    u.name,
                    s,
                    "sessions_per_device",
                )
            if len(of_user) >= limits["sessions_per_user"]:
                s, _u = of_user[0]
                raise _limit_refusal(
                    f"user {user.name} already has {len(of_user)} open session(s) (limit sessions_per_user="
                    f"{limits['sessions_per_user']}): session {s.id}, open since {iso_seconds(s.started_at)}; "
                    f"end it with 'lr sessions end {s.id}'",
                    user.name,
                    s,
                    "sessions_per_user",
                )
            if len(open_rows) >= limits["max_sessions"]:
                s, u = open_rows[0]
                raise _limit_refusal(
                    f"the tenant has {len(open_rows)} open sessions (limit max_sessions={limits['max_sessions']}); "
                    f"the oldest is {s.id} of user {u.name}, open since {iso_seconds(s.started_at)}",
                    u.name,
                    s,
                    "max_sessions",
                )
            session = Session(
                id=new_id("ses"),
                tenant_id=tenant_id,
                device_id=device.id,
                user_id=user.id,
                started_at=now,
                last_activity_at=now,
                cwd=cwd,
            )
            db.add(session)
            detail = {"session": session.id, "device": device.id}
            await self._append_audit(db, AuditEvent(tenant_id, user.name, "session.open", "success", detail))
            return session

    async def _settings_in(self, db: Tx, tenant_id: str) -> dict[str, Any]:
        values = {k: spec.default for k, spec in SETTING_KEYS.items()}
        rows = await self._core(db, select(Setting.key, Setting.value).where(Setting.tenant_id == tenant_id))
        for key, value in rows:
            if key in SETTING_KEYS:
                values[key] = parse_value(key, value)
        return values

    async def command_context(self, session_id: str) -> tuple[Session, Device, dict[str, Any]] | None:
        """A session with its device and its tenant's settings, in one transaction (the command hot path)."""
        async with self.read() as db:
            row = (
                await db.execute(
                    select(Session, Device).join(Device, Device.id == Session.device_id).where(Session.id == session_id)
                )
            ).one_or_none()
            if row is None:
                return None
            session, device = row
            return session, device, await self._settings_in(db, session.tenant_id)

    async def session(self, session_id: str) -> Session | None:
        async with self.read() as db:
            return await db.get(Session, session_id)

    async def end_session(self, session_id: str, reason: str, actor: str) -> Session | None:
        async with self.tx() as db:
            session = await db.get(Session, session_id, with_for_update=True)
            if session is None or session.ended_at is not None:
                return session
            session.ended_at = time.time()
            session.end_reason = reason
            detail = {"session": session_id, "reason": reason}
            await self._append_audit(db, AuditEvent(session.tenant_id, actor, "session.close", "success", detail))
            return session

    async def sessions(self, tenant_id: str, include_ended: bool) -> list[tuple[Session, User, Device]]:
        async with self.read() as db:
            q = (
                select(Session, User, Device)
                .join(User, User.id == Session.user_id)
                .join(Device, Device.id == Session.device_id)
                .where(Session.tenant_id == tenant_id)
            )
            if not include_ended:
                q = q.where(Session.ended_at.is_(None))
            return [tuple(r) for r in (await db.execute(q.order_by(Session.started_at))).all()]  # type: ignore[misc]

    # -- command log (SPEC §9) ----------------------------------------------

    async def add_command(self, command: Command, audit: AuditEvent | None = None, active: bool = False) -> None:
        """Log a command; ``active`` also marks its session active (one transaction)."""
        columns = (c.key for c in Command.__table__.columns)
        values = {key: value for key in columns if (value := getattr(command, key)) is not None}  # defaults apply
        async with self.tx() as db:
            await self._core(db, insert(Command).values(**values))
            if active:
                touch = update(Session).where(Session.id == command.session_id)
                await self._core(db, touch.values(last_activity_at=command.started_at))
            if audit is not None:
                await self._append_audit(db, audit)

    async def finish_command(
        self, command_id: str, session_id: str, session_values: dict[str, Any], **values: Any
    ) -> None:
        """Write a command's final state and its session's activity (and cwd) in one transaction."""
        async with self.tx() as db:
            await self._core(db, update(Command).where(Command.id == command_id).values(**values))
            await self._core(db, update(Session).where(Session.id == session_id).values(**session_values))

    async def command(self, command_id: str) -> Command | None:
        async with self.read() as db:
            return await db.get(Command, command_id)

    async def commands(self, tenant_id: str, session_id: str | None = None, limit: int = 1000) -> list[Command]:
        async with self.read() as db:
            q = select(Command).where(Command.tenant_id == tenant_id)
            if session_id is not None:
                q = q.where(Command.session_id == session_id)
            return list((await db.execute(q.order_by(Command.started_at).limit(limit))).scalars())


def _limit_refusal(message: str, holder: str, session: Session, limit: str) -> SessionRefused:
    """A session limit refusal names the holder, their session and since when (SPEC §6)."""
    return SessionRefused(
        message, holder=holder, holder_session=session.id, since=iso_seconds(session.started_at), limit=limit
    )

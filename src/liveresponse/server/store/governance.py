"""The store's identity and governance operations (SPEC §6, §8, §9; DR-11).

Tenants, custom roles and group-limited assignments, API token revocation,
sign-in rate limiting, the idle sweep's reads, and the searches of the audit
trail and the command log. A mixin of :class:`~liveresponse.server.store.store.Store`
so that one method stays one transaction, with the same rules as store.py:
inside ``tx()``/``read()`` await nothing but the session's own calls (DR-10).
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from liveresponse.protocol.errors import Conflict, NotFound
from liveresponse.server.ids import new_id
from liveresponse.server.settings_keys import SETTING_KEYS, parse_value
from liveresponse.server.store.models import (
    ApiToken,
    AuditRecord,
    Command,
    DeviceGroup,
    Role,
    Session,
    Setting,
    Tenant,
    User,
)

if TYPE_CHECKING:
    from liveresponse.server.store.store import AuditEvent, Tx

# Sign-in rate limiting (DR-11): this many failures within the window lock the account for LOCK_S.
SIGN_IN_MAX_FAILURES = 5
SIGN_IN_WINDOW_S = 300.0
SIGN_IN_LOCK_S = 300.0


@dataclass(frozen=True)
class AuditQuery:
    """Filters of ``lr audit list`` (all optional; times are epoch seconds)."""

    tenant_id: str | None
    actor: str | None = None
    event: str | None = None  # exact, or a prefix: "session" matches session.open and session.close
    refs: frozenset[str] | None = None  # ids one of the detail's values must be (a device and its sessions)
    since: float | None = None
    until: float | None = None
    limit: int = 1000


@dataclass(frozen=True)
class CommandQuery:
    """Filters of ``lr log``."""

    tenant_id: str
    user: str | None = None
    device_id: str | None = None
    command: str | None = None
    status: str | None = None
    session_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 1000


class GovernanceOps:
    if TYPE_CHECKING:

        def tx(self) -> AbstractAsyncContextManager[Tx]: ...
        def read(self) -> AbstractAsyncContextManager[Tx]: ...
        async def _append_audit(self, db: Tx, ev: AuditEvent) -> None: ...
        @staticmethod
        async def _core(db: Tx, statement: Any) -> Any: ...

    # -- tenants ----------------------------------------------------------------

    async def add_tenant(self, name: str, actor: str) -> Tenant:
        from liveresponse.server.store.store import AuditEvent

        async with self.tx() as db:
            if (await db.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none() is not None:
                raise Conflict(f"tenant {name!r} already exists")
            tenant = Tenant(id=new_id("ten"), name=name, created_at=time.time())
            db.add(tenant)
            await self._append_audit(db, AuditEvent(tenant.id, actor, "tenant.add", "success", {"tenant": name}))
            return tenant

    # -- roles and assignments ------------------------------------------------------

    async def add_role(self, tenant_id: str, name: str, permissions: frozenset[str], actor: str) -> Role:
        from liveresponse.server.store.store import AuditEvent

        async with self.tx() as db:
            q = select(Role).where(Role.tenant_id == tenant_id, Role.name == name)
            if (await db.execute(q)).scalar_one_or_none() is not None:
                raise Conflict(f"role {name!r} already exists")
            role = Role(
                id=new_id("rol"),
                tenant_id=tenant_id,
                name=name,
                permissions=",".join(sorted(permissions)),
                created_at=time.time(),
            )
            db.add(role)
            detail = {"role": name, "permissions": sorted(permissions)}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "role.add", "success", detail))
            return role

    async def role(self, tenant_id: str, name: str) -> Role | None:
        async with self.read() as db:
            q = select(Role).where(Role.tenant_id == tenant_id, Role.name == name)
            return (await db.execute(q)).scalar_one_or_none()

    async def assign_role(
        self, tenant_id: str, user_name: str, role: str, group_ids: list[str] | None, actor: str
    ) -> User:
        from liveresponse.server.store.store import AuditEvent

        async with self.tx() as db:
            q = select(User).where(User.tenant_id == tenant_id, User.name == user_name)
            user = (await db.execute(q)).scalar_one_or_none()
            if user is None:
                raise NotFound(f"no user {user_name!r}; add one with 'lr admin user add'")
            detail = {
                "user": user_name,
                "old_role": user.role,
                "role": role,
                "old_groups": None if user.group_ids is None else json.loads(user.group_ids),
                "groups": group_ids,
            }
            user.role = role
            user.group_ids = None if group_ids is None else json.dumps(sorted(group_ids))
            await self._append_audit(db, AuditEvent(tenant_id, actor, "role.assign", "success", detail))
            return user

    async def group_ids_by_name(self, tenant_id: str, names: list[str]) -> list[str]:
        async with self.read() as db:
            q = select(DeviceGroup).where(DeviceGroup.tenant_id == tenant_id, DeviceGroup.name.in_(names))
            found = {g.name: g.id for g in (await db.execute(q)).scalars()}
        missing = [n for n in names if n not in found]
        if missing:
            raise NotFound(f"no device group {missing[0]!r}; add one with 'lr admin group add'")
        return [found[n] for n in names]

    async def set_group(
        self, tenant_id: str, name: str, level: str | None, device_type: str | None, actor: str
    ) -> DeviceGroup:
        from liveresponse.server.store.store import AuditEvent

        async with self.tx() as db:
            q = select(DeviceGroup).where(DeviceGroup.tenant_id == tenant_id, DeviceGroup.name == name)
            group = (await db.execute(q)).scalar_one_or_none()
            if group is None:
                raise NotFound(f"no device group {name!r}; add one with 'lr admin group add'")
            detail: dict[str, Any] = {"group": name}
            if level is not None:
                detail.update(old_remediation_level=group.remediation_level, remediation_level=level)
                group.remediation_level = level
            if device_type is not None:
                new_type = None if device_type == "reported" else device_type
                detail.update(old_device_type=group.device_type, device_type=new_type)
                group.device_type = new_type
            await self._append_audit(db, AuditEvent(tenant_id, actor, "group.set", "success", detail))
            return group

    # -- tokens -------------------------------------------------------------------

    async def revoke_token(self, tenant_id: str, token_id: str | None, token_hash: str | None, actor: str) -> ApiToken:
        from liveresponse.server.store.store import AuditEvent

        async with self.tx() as db:
            q = select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(User.tenant_id == tenant_id)
            q = q.where(ApiToken.id == token_id) if token_id is not None else q.where(ApiToken.token_hash == token_hash)
            row = (await db.execute(q)).one_or_none()
            if row is None:
                raise NotFound("no such API token in this tenant (give its id, tok_..., or the token itself)")
            token, user = row
            if token.revoked_at is None:
                token.revoked_at = time.time()
            detail = {"token": token.id, "user": user.name, "name": token.name}
            await self._append_audit(db, AuditEvent(tenant_id, actor, "token.revoke", "success", detail))
            return token

    # -- sign-in rate limiting -----------------------------------------------------

    async def record_sign_in_failure(self, user_id: str, now: float) -> float | None:
        """Count one failed sign-in; the lock's end when this failure locks the account."""
        async with self.tx() as db:
            user = await db.get(User, user_id, with_for_update=True)
            if user is None:
                return None
            if user.first_failed_at is None or now - user.first_failed_at > SIGN_IN_WINDOW_S:
                user.failed_sign_ins, user.first_failed_at = 1, now
            else:
                user.failed_sign_ins += 1
            if user.failed_sign_ins >= SIGN_IN_MAX_FAILURES:
                user.locked_until = now + SIGN_IN_LOCK_S
                user.failed_sign_ins, user.first_failed_at = 0, None
                return user.locked_until
            return None

    async def reset_sign_in_failures(self, user_id: str) -> None:
        async with self.tx() as db:
            reset = update(User).where(User.id == user_id)
            await self._core(db, reset.values(failed_sign_ins=0, first_failed_at=None, locked_until=None))

    # -- idle sessions (server/idle.py) --------------------------------------------

    async def open_sessions_with_idle_timeout(self) -> list[tuple[Session, int]]:
        """Every open session, with its tenant's idle_timeout_s."""
        default = int(SETTING_KEYS["idle_timeout_s"].default)
        async with self.read() as db:
            sessions = list((await db.execute(select(Session).where(Session.ended_at.is_(None)))).scalars())
            rows = await db.execute(select(Setting.tenant_id, Setting.value).where(Setting.key == "idle_timeout_s"))
            timeouts = {tenant: int(parse_value("idle_timeout_s", value)) for tenant, value in rows}
        return [(s, timeouts.get(s.tenant_id, default)) for s in sessions]

    async def touch_sessions(self, session_ids: list[str], at: float) -> None:
        if not session_ids:
            return
        async with self.tx() as db:
            touch = update(Session).where(Session.id.in_(session_ids), Session.ended_at.is_(None))
            await self._core(db, touch.values(last_activity_at=at))

    # -- searches (SPEC §9) -------------------------------------------------------

    async def device_refs(self, device_id: str) -> frozenset[str]:
        """A device's id and the ids of every session ever opened on it: what audit details name."""
        async with self.read() as db:
            ids = (await db.execute(select(Session.id).where(Session.device_id == device_id))).scalars()
            return frozenset([device_id, *ids])

    async def search_audit(self, query: AuditQuery) -> list[AuditRecord]:
        async with self.read() as db:
            q = select(AuditRecord).order_by(AuditRecord.seq)
            if query.tenant_id is not None:
                q = q.where(AuditRecord.tenant_id == query.tenant_id)
            if query.actor is not None:
                q = q.where(AuditRecord.actor == query.actor)
            if query.event is not None:
                event = query.event.rstrip(".*")
                q = q.where(or_(AuditRecord.event == event, AuditRecord.event.startswith(event + ".")))
            if query.since is not None:
                q = q.where(AuditRecord.at >= query.since)
            if query.until is not None:
                q = q.where(AuditRecord.at <= query.until)
            if query.refs is None:
                return list((await db.execute(q.limit(query.limit))).scalars())
            found: list[AuditRecord] = []
            for rec in (await db.execute(q)).scalars():
                values = json.loads(rec.detail_json).values()
                if any(isinstance(v, str) and v in query.refs for v in values):
                    found.append(rec)
                    if len(found) >= query.limit:
                        break
            return found

    async def search_commands(self, query: CommandQuery) -> list[Command]:
        async with self.read() as db:
            q = select(Command).where(Command.tenant_id == query.tenant_id)
            if query.user is not None:
                q = q.where(Command.user_name == query.user)
            if query.device_id is not None:
                q = q.join(Session, Session.id == Command.session_id).where(Session.device_id == query.device_id)
            if query.command is not None:
                q = q.where(Command.command == query.command.lower())
            if query.status is not None:
                q = q.where(Command.status == query.status)
            if query.session_id is not None:
                q = q.where(Command.session_id == query.session_id)
            if query.since is not None:
                q = q.where(Command.started_at >= query.since)
            if query.until is not None:
                q = q.where(Command.started_at <= query.until)
            return list((await db.execute(q.order_by(Command.started_at).limit(query.limit))).scalars())

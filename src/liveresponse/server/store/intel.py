"""Store operations of the tenant's intelligence for ``analyze``: indicators and YARA rule sets.

One method is one transaction, and every change is audited inside it (SPEC §9):
``ioc.add``, ``ioc.delete``, ``rules.add``, ``rules.delete``. Adding what exists
(the same sha256, the same rule set name) replaces it and says so in the audit
record. Inside ``tx()``/``read()`` nothing is awaited but the session's own
calls (store.py, DR-10).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select

from liveresponse.protocol.errors import NotFound
from liveresponse.server.ids import new_id
from liveresponse.server.store.intel_models import Indicator, RuleSet
from liveresponse.server.store.store import AuditEvent, Store


@dataclass(frozen=True)
class NewRuleSet:
    name: str
    source: str
    sha256: str
    size: int
    rule_count: int


@dataclass(frozen=True)
class TenantIntel:
    """What one ``analyze`` needs, read in one snapshot."""

    indicators: list[Indicator]
    rule_sets: list[RuleSet]


class IntelOps:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- indicators ------------------------------------------------------------

    async def put_indicator(
        self, tenant_id: str, sha256: str, verdict: str, title: str, actor: str
    ) -> tuple[Indicator, bool]:
        """Add an indicator, or update the one with this sha256; returns (row, replaced)."""
        now = time.time()
        async with self.store.tx() as db:
            q = select(Indicator).where(Indicator.tenant_id == tenant_id, Indicator.sha256 == sha256)
            row = (await db.execute(q)).scalar_one_or_none()
            replaced = row is not None
            previous = None if row is None else {"verdict": row.verdict, "title": row.title}
            if row is None:
                row = Indicator(id=new_id("ioc"), tenant_id=tenant_id, sha256=sha256, created_by=actor, created_at=now)
                db.add(row)
            row.verdict = verdict
            row.title = title
            row.updated_at = now
            await db.flush()
            detail = {"sha256": sha256, "verdict": verdict, "title": title, "replaced": replaced, "previous": previous}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "ioc.add", "success", detail))
            return row, replaced

    async def indicators(self, tenant_id: str) -> list[Indicator]:
        async with self.store.read() as db:
            q = select(Indicator).where(Indicator.tenant_id == tenant_id).order_by(Indicator.sha256)
            return list((await db.execute(q)).scalars())

    async def delete_indicator(self, tenant_id: str, sha256: str, actor: str) -> Indicator:
        async with self.store.tx() as db:
            q = select(Indicator).where(Indicator.tenant_id == tenant_id, Indicator.sha256 == sha256)
            row = (await db.execute(q)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no indicator with sha256 {sha256}; 'lr admin ioc list' lists them", sha256=sha256)
            await db.execute(delete(Indicator).where(Indicator.id == row.id))
            detail = {"sha256": sha256, "verdict": row.verdict, "title": row.title}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "ioc.delete", "success", detail))
            return row

    # -- YARA rule sets -----------------------------------------------------------

    async def put_rule_set(self, tenant_id: str, new: NewRuleSet, actor: str) -> tuple[RuleSet, bool]:
        """Add a rule set, or replace the one of that name; returns (row, replaced)."""
        now = time.time()
        async with self.store.tx() as db:
            q = select(RuleSet).where(RuleSet.tenant_id == tenant_id, RuleSet.name == new.name)
            row = (await db.execute(q)).scalar_one_or_none()
            replaced = row is not None
            previous = None if row is None else row.sha256
            if row is None:
                row = RuleSet(id=new_id("yar"), tenant_id=tenant_id, name=new.name, created_by=actor, created_at=now)
                db.add(row)
            row.source = new.source
            row.sha256 = new.sha256
            row.size = new.size
            row.rule_count = new.rule_count
            row.updated_at = now
            await db.flush()
            detail = {
                "name": new.name,
                "sha256": new.sha256,
                "size": new.size,
                "rules": new.rule_count,
                "replaced": replaced,
                "previous_sha256": previous,
            }
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "rules.add", "success", detail))
            return row, replaced

    async def rule_sets(self, tenant_id: str) -> list[RuleSet]:
        async with self.store.read() as db:
            q = select(RuleSet).where(RuleSet.tenant_id == tenant_id).order_by(RuleSet.name)
            return list((await db.execute(q)).scalars())

    async def delete_rule_set(self, tenant_id: str, name: str, actor: str) -> RuleSet:
        async with self.store.tx() as db:
            q = select(RuleSet).where(RuleSet.tenant_id == tenant_id, RuleSet.name == name)
            row = (await db.execute(q)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no YARA rule set {name!r}; 'lr admin rules list' lists them", name=name)
            await db.execute(delete(RuleSet).where(RuleSet.id == row.id))
            detail = {"name": name, "sha256": row.sha256, "rules": row.rule_count}
            await self.store._append_audit(db, AuditEvent(tenant_id, actor, "rules.delete", "success", detail))
            return row

    # -- what analyze sends ---------------------------------------------------------

    async def tenant_intel(self, tenant_id: str) -> TenantIntel:
        """Indicators and rule sets of one snapshot, so a bundle never mixes two states of the tables."""
        async with self.store.read() as db:
            iq = select(Indicator).where(Indicator.tenant_id == tenant_id).order_by(Indicator.sha256)
            rq = select(RuleSet).where(RuleSet.tenant_id == tenant_id).order_by(RuleSet.name)
            indicators = list((await db.execute(iq)).scalars())
            rule_sets = list((await db.execute(rq)).scalars())
        return TenantIntel(indicators, rule_sets)

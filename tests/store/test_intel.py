"""The tables of analyze's tenant intelligence (indicators, YARA rule sets), on SQLite and PostgreSQL (conftest.py)."""

from __future__ import annotations

import pytest

from liveresponse.protocol.errors import NotFound
from liveresponse.server.store.intel import IntelOps, NewRuleSet
from liveresponse.server.store.store import Store

SHA_A = "a" * 64
SHA_B = "b" * 64


async def test_indicators_add_update_list_delete_audited(store: Store) -> None:
    tenant = (await store.ensure_tenant()).id
    ops = IntelOps(store)
    row, replaced = await ops.put_indicator(tenant, SHA_B, "malicious", "dropper", "ana")
    assert replaced is False
    assert (row.sha256, row.verdict, row.title, row.created_by) == (SHA_B, "malicious", "dropper", "ana")
    await ops.put_indicator(tenant, SHA_A, "clean", "known good", "ana")
    row, replaced = await ops.put_indicator(tenant, SHA_B, "suspicious", "maybe a dropper", "bob")
    assert replaced is True and row.created_by == "ana" and row.updated_at >= row.created_at
    assert [(r.sha256, r.verdict, r.title) for r in await ops.indicators(tenant)] == [
        (SHA_A, "clean", "known good"),
        (SHA_B, "suspicious", "maybe a dropper"),
    ]
    deleted = await ops.delete_indicator(tenant, SHA_A, "ana")
    assert deleted.title == "known good"
    assert [r.sha256 for r in await ops.indicators(tenant)] == [SHA_B]
    with pytest.raises(NotFound, match=f"no indicator with sha256 {SHA_A}"):
        await ops.delete_indicator(tenant, SHA_A, "ana")
    records = [r for r in await store.audit_records() if r.event.startswith("ioc.")]
    assert [(r.event, r.actor) for r in records] == [
        ("ioc.add", "ana"), ("ioc.add", "ana"), ("ioc.add", "bob"), ("ioc.delete", "ana"),
    ]  # fmt: skip
    assert await store.verify_audit() == []


async def test_rule_sets_replace_by_name_and_stay_per_tenant(store: Store) -> None:
    first = (await store.ensure_tenant()).id
    second = (await store.add_tenant("other", "test")).id
    ops = IntelOps(store)
    one = NewRuleSet("web.yar", "rule A { condition: true }", SHA_A, 26, 1)
    two = NewRuleSet("web.yar", "rule A { condition: true }\nrule B { condition: false }", SHA_B, 54, 2)
    row, replaced = await ops.put_rule_set(first, one, "ana")
    assert replaced is False and row.rule_count == 1
    row, replaced = await ops.put_rule_set(first, two, "ana")
    assert replaced is True and (row.sha256, row.size, row.rule_count) == (SHA_B, 54, 2)
    await ops.put_indicator(second, SHA_A, "malicious", "theirs", "ana")
    mine, theirs = await ops.tenant_intel(first), await ops.tenant_intel(second)
    assert [(r.name, r.source) for r in mine.rule_sets] == [("web.yar", two.source)] and mine.indicators == []
    assert theirs.rule_sets == [] and [i.title for i in theirs.indicators] == ["theirs"]
    with pytest.raises(NotFound, match=r"no YARA rule set 'web\.yar'"):
        await ops.delete_rule_set(second, "web.yar", "ana")
    assert (await ops.delete_rule_set(first, "web.yar", "ana")).rule_count == 2
    assert await ops.rule_sets(first) == []
    events = [r.event for r in await store.audit_records() if r.event.startswith("rules.")]
    assert events == ["rules.add", "rules.add", "rules.delete"]

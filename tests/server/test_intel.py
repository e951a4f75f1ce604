"""The analyze envelope's intel bundle and ``lr admin ioc|rules`` (server/intel.py), in memory (STYLE.md tier 2)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from liveresponse.protocol.errors import CommandFailed
from liveresponse.server.intel import IntelError, admin_ioc, admin_rules
from liveresponse.server.store.intel import IntelOps
from tests.server.conftest import World

DIGEST = hashlib.sha256(b"dropper").hexdigest()


async def prepare(world: World, **args: Any) -> dict[str, Any]:
    device = await world.device(f"host-{len(args)}")
    session = SimpleNamespace(id="ses_x", tenant_id=world.tenant_id)
    settings = await world.store.settings(world.tenant_id)
    preparer = world.state.dispatcher.envelope_preparers["analyze"]
    return await preparer(session, None, device, {"type": "file", "target": "/x", **args}, settings)  # type: ignore[arg-type]


def ns(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


async def test_an_empty_tenant_gets_an_empty_bundle_by_ticket_once(world: World) -> None:
    library = await prepare(world)
    data = b'{"iocs":[],"rules":[]}'
    sha256 = hashlib.sha256(data).hexdigest()
    assert {k: library[k] for k in ("name", "sha256", "size", "path")} == {
        "name": "intel",
        "sha256": sha256,
        "size": len(data),
        "path": f"/agent/v1/blobs/{sha256}",
    }
    assert "timeout_s" not in library and library["indicators"] == 0 and library["rule_sets"] == 0
    fetched = await world.http.get(library["path"], params={"ticket": library["ticket"]})
    assert fetched.status_code == 200 and fetched.content == data
    again = await world.http.get(library["path"], params={"ticket": library["ticket"]})
    assert again.status_code == 404  # one-time ticket


async def test_the_bundle_is_canonical_and_follows_every_change(world: World, tmp_path: Path) -> None:
    rule = tmp_path / "web.yar"
    rule.write_text('rule Shell { strings: $a = "eval(" condition: $a }\n')
    await admin_ioc(world.store, world.tenant_id, ns(ioc_command="add", sha256=DIGEST.upper(), verdict="malicious",
                                                      title=" test dropper ", output="table"), "admin-cli")  # fmt: skip
    await admin_rules(world.store, world.tenant_id, ns(rules_command="add", file=str(rule), name=None), "admin-cli")
    library = await prepare(world)
    blob = world.state.blobs.path(library["sha256"]).read_bytes()
    source = rule.read_text()
    expected = {
        "iocs": [{"sha256": DIGEST, "title": "test dropper", "verdict": "malicious"}],
        "rules": [{"name": "web.yar", "sha256": hashlib.sha256(source.encode()).hexdigest(), "source": source}],
    }
    assert json.loads(blob) == expected
    assert blob == json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert (await prepare(world))["sha256"] == library["sha256"]  # unchanged tenant, same bundle
    await admin_ioc(world.store, world.tenant_id, ns(ioc_command="delete", sha256=DIGEST), "admin-cli")
    assert (await prepare(world))["sha256"] != library["sha256"]


async def test_a_bad_pid_is_refused_before_the_device(world: World) -> None:
    with pytest.raises(CommandFailed, match="a positive number, not '-3'"):
        await prepare(world, type="process", target="-3")


async def test_rule_files_are_compiled_before_anything_is_stored(world: World, tmp_path: Path) -> None:
    cases = {
        "syntax.yar": ("rule A {\n condition:\n  true and nope\n}\n", 'line 3: undefined identifier "nope"'),
        "include.yar": ('include "other.yar"\nrule A { condition: true }\n', "line 1: includes are disabled"),
        "empty.yar": ("// only a comment\n", "the file holds no YARA rule"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(IntelError) as raised:
            await admin_rules(world.store, world.tenant_id, ns(rules_command="add", file=str(tmp_path / name),
                                                                name=None), "admin-cli")  # fmt: skip
        assert message in raised.value.message
    (tmp_path / "latin1.yar").write_bytes(b'rule A { strings: $a = "caf\xe9" condition: $a }')
    with pytest.raises(IntelError, match="not UTF-8 text"):
        await admin_rules(world.store, world.tenant_id, ns(rules_command="add", file=str(tmp_path / "latin1.yar"),
                                                            name=None), "admin-cli")  # fmt: skip
    (tmp_path / "ok.yar").write_text('rule A { condition: filename == "x" }\n')  # the agent's externals
    with pytest.raises(IntelError, match="is refused"):
        await admin_rules(world.store, world.tenant_id, ns(rules_command="add", file=str(tmp_path / "ok.yar"),
                                                            name="a/b"), "admin-cli")  # fmt: skip
    assert await IntelOps(world.store).rule_sets(world.tenant_id) == []
    await admin_rules(world.store, world.tenant_id, ns(rules_command="add", file=str(tmp_path / "ok.yar"),
                                                        name="named.yar"), "admin-cli")  # fmt: skip
    assert [r.name for r in await IntelOps(world.store).rule_sets(world.tenant_id)] == ["named.yar"]


async def test_admin_lists_as_json_and_table(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    await admin_ioc(world.store, world.tenant_id, ns(ioc_command="add", sha256=DIGEST, verdict="suspicious",
                                                      title="odd", output="table"), "admin-cli")  # fmt: skip
    capsys.readouterr()
    await admin_ioc(world.store, world.tenant_id, ns(ioc_command="list", output="json"), "admin-cli")
    (row,) = json.loads(capsys.readouterr().out)
    assert {k: row[k] for k in ("sha256", "verdict", "title", "created_by")} == {
        "sha256": DIGEST, "verdict": "suspicious", "title": "odd", "created_by": "admin-cli",
    }  # fmt: skip
    await admin_ioc(world.store, world.tenant_id, ns(ioc_command="list", output="table"), "admin-cli")
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["sha256", "verdict", "title", "updated"]
    assert line.split()[:3] == [DIGEST, "suspicious", "odd"]

"""The tenant's intelligence for ``analyze`` (SPEC §5): what the envelope carries, and ``lr admin ioc|rules``.

Delivery: for every ``analyze`` the server builds the tenant's *intel bundle*, one
JSON document in canonical form (keys sorted, no spaces, UTF-8)::

    {"iocs": [{"sha256", "verdict", "title"}, ...], "rules": [{"name", "source", "sha256"}, ...]}

stores it content-addressed in the blob store and hands it over exactly the way
putfile hands over a library file (DR-13): the envelope's ``library`` carries
its name (``intel``), sha256, size, path and a one-time ticket. The envelope is
signed, so the agent trusts that sha256 and fetches the bundle only when it does
not have it yet. The bundle is built from the store on every command: ``lr
admin`` changes reach the next ``analyze`` on a running server (SPEC §3).

Rule files are compiled with yara-python when they are added; one that does not
compile is refused with yara's error (its line) and nothing is stored. Includes
are refused (a rule set must not read other files, here or on the device), and
the external variables the agent defines (``YARA_EXTERNALS``) may be used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from liveresponse.protocol.errors import CommandFailed, LimitExceeded, LiveResponseError
from liveresponse.server.blobs import BlobStore
from liveresponse.server.library import LibraryService
from liveresponse.server.store.intel import IntelOps, NewRuleSet, TenantIntel
from liveresponse.server.store.intel_models import Indicator, RuleSet
from liveresponse.server.store.models import Device, Session, User
from liveresponse.server.store.store import Store
from liveresponse.server.timestamps import iso_millis

BUNDLE_NAME = "intel"
VERDICTS = ("malicious", "suspicious", "clean")
RULES_MAX_BYTES = 8 * 1024 * 1024  # one rule file; the bundle holds every rule set's source
TITLE_MAX_CHARS = 1000
# The agent passes these to every scan (agent/analysis/yara_rules.py); rules may use them.
YARA_EXTERNALS = {"filename": "", "filepath": "", "extension": "", "filetype": ""}
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_RULE_SET_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")


class IntelError(LiveResponseError):
    code = "intel"


# -- the bundle ---------------------------------------------------------------------


def bundle_document(intel: TenantIntel) -> dict[str, Any]:
    return {
        "iocs": [{"sha256": i.sha256, "verdict": i.verdict, "title": i.title} for i in intel.indicators],
        "rules": [{"name": r.name, "source": r.source, "sha256": r.sha256} for r in intel.rule_sets],
    }


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """One byte form per content, so an unchanged tenant keeps the same bundle sha256 (and the agent's cache)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class IntelService:
    def __init__(self, store: Store, blobs: BlobStore, library: LibraryService) -> None:
        self.ops = IntelOps(store)
        self.blobs = blobs
        self.library = library  # its one-time fetch tickets serve the bundle too

    async def prepare_analyze(
        self, session: Session, user: User, device: Device, args: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        if args.get("type") == "process":
            check_pid(str(args.get("target", "")))  # refused here, before anything reaches the device
        intel = await self.ops.tenant_intel(session.tenant_id)
        data = canonical_bytes(bundle_document(intel))
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.blobs.path(sha256).exists():
            await asyncio.to_thread(self.blobs.put_bytes, data)
        return {
            "name": BUNDLE_NAME,
            "sha256": sha256,
            "size": len(data),
            "path": f"/agent/v1/blobs/{sha256}",
            # The same ticket putfile's file gets (server/library.py, DR-13): one use, 120 s.
            "ticket": self.library.issue_ticket(sha256, device.id),
            "indicators": len(intel.indicators),
            "rule_sets": len(intel.rule_sets),
        }

    def install(self, preparers: dict[str, Any]) -> None:
        preparers["analyze"] = self.prepare_analyze


def check_pid(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise CommandFailed(f"analyze process takes a process id, a positive number, not {text!r}")
    return int(text)


# -- validation -------------------------------------------------------------------------


def check_sha256(text: str) -> str:
    if not _SHA256_RE.fullmatch(text):
        raise IntelError(f"{text!r} is not a sha256: 64 hexadecimal digits")
    return text.lower()


def check_rule_set_name(name: str) -> str:
    if not _RULE_SET_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise IntelError(f"rule set name {name!r} is refused: use letters, digits, -, _ and . only (at most 255)")
    return name


def compile_rule_source(name: str, source: str) -> tuple[int, list[str]]:
    """Compile as the agent will (no includes, the agent's externals); (rule count, yara's warnings)."""
    import yara

    try:
        rules = yara.compile(sources={name: source}, includes=False, externals=YARA_EXTERNALS)
    except yara.SyntaxError as exc:
        raise IntelError(f"{name}: the YARA rules do not compile: {exc}; nothing was stored") from None
    except yara.Error as exc:
        raise IntelError(f"{name}: yara refused the rules: {exc}; nothing was stored") from None
    count = sum(1 for _ in rules)
    if count == 0:
        raise IntelError(f"{name}: the file holds no YARA rule; nothing was stored")
    return count, [str(w) for w in getattr(rules, "warnings", [])]


def read_rule_file(path: Path, name: str) -> NewRuleSet:
    try:
        size = path.stat().st_size
        if size > RULES_MAX_BYTES:
            raise LimitExceeded(f"{path}: {size} bytes is over the {RULES_MAX_BYTES} bytes a rule file may have")
        raw = path.read_bytes()
    except OSError as exc:
        raise IntelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntelError(
            f"{path}: not UTF-8 text (byte {exc.start}); write such strings as hex strings {{ 4D 5A }}"
        ) from None
    count, warnings = compile_rule_source(name, source)
    for warning in warnings:
        print(f"warning: {name}: {warning}", file=sys.stderr)
    return NewRuleSet(name, source, hashlib.sha256(raw).hexdigest(), len(raw), count)


# -- lr admin ioc | rules -------------------------------------------------------------------


def indicator_row(row: Indicator) -> dict[str, Any]:
    return {
        "sha256": row.sha256,
        "verdict": row.verdict,
        "title": row.title,
        "created_by": row.created_by,
        "created": iso_millis(row.created_at),
        "updated": iso_millis(row.updated_at),
    }


def rule_set_row(row: RuleSet) -> dict[str, Any]:
    return {
        "name": row.name,
        "rules": row.rule_count,
        "size": row.size,
        "sha256": row.sha256,
        "created_by": row.created_by,
        "created": iso_millis(row.created_at),
        "updated": iso_millis(row.updated_at),
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _print_rows(rows: list[dict[str, Any]], columns: list[str], output: str) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    cells = [columns, *[["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


async def admin_ioc(store: Store, tenant_id: str, args: Any, actor: str) -> int:
    ops = IntelOps(store)
    if args.ioc_command == "add":
        sha256 = check_sha256(args.sha256)
        title = args.title.strip()
        if not title or len(title) > TITLE_MAX_CHARS:
            raise IntelError(f"--title takes a text of 1 to {TITLE_MAX_CHARS} characters")
        if any(ch < " " or ch == "\x7f" for ch in title):
            raise IntelError("--title takes one line of text: control characters (newlines, escapes) are refused")
        if args.verdict not in VERDICTS:
            raise IntelError(f"--verdict is one of {', '.join(VERDICTS)}")
        row, replaced = await ops.put_indicator(tenant_id, sha256, args.verdict, title, actor)
        print(f"indicator {row.sha256} {'updated' if replaced else 'added'}: {row.verdict}, {row.title}")
        return 0
    if args.ioc_command == "delete":
        row = await ops.delete_indicator(tenant_id, check_sha256(args.sha256), actor)
        print(f"indicator {row.sha256} deleted ({row.verdict}, {row.title})")
        return 0
    rows = [indicator_row(r) for r in await ops.indicators(tenant_id)]
    _print_rows(rows, ["sha256", "verdict", "title", "updated"], args.output)
    return 0


async def admin_rules(store: Store, tenant_id: str, args: Any, actor: str) -> int:
    ops = IntelOps(store)
    if args.rules_command == "add":
        path = Path(args.file)
        name = check_rule_set_name(args.name or path.name)
        new = read_rule_file(path, name)
        row, replaced = await ops.put_rule_set(tenant_id, new, actor)
        done = "replaced" if replaced else "added"
        print(f"rule set {row.name} {done}: {_plural(row.rule_count, 'rule')}, sha256 {row.sha256}")
        return 0
    if args.rules_command == "delete":
        row = await ops.delete_rule_set(tenant_id, check_rule_set_name(args.name), actor)
        print(f"rule set {row.name} deleted ({_plural(row.rule_count, 'rule')})")
        return 0
    rows = [rule_set_row(r) for r in await ops.rule_sets(tenant_id)]
    _print_rows(rows, ["name", "rules", "size", "sha256", "updated"], args.output)
    return 0

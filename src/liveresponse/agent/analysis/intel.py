"""The tenant's intel bundle on the device: fetched only when not cached, compiled once.

The signed envelope's ``library`` names the bundle (``intel``), its sha256 and size,
and carries a one-time ticket (server/intel.py). Its sha256 is trusted because the
server signed the envelope. The bundle lives in ``STATE/intel/<sha256>.json`` (0700
folder, 0600 file); a cached copy is used when its bytes still hash to that sha256,
else it is fetched again through the working folder's verified download
(agent/workfolder.py). The parsed indicators and the compiled YARA rules stay in
memory, keyed by the bundle's sha256: an unchanged tenant costs no fetch and no
compile. The newest few bundles are kept on disk; older ones are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveresponse.agent.analysis.yara_rules import CompiledRules, compile_rule_sets
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.state import ensure_private_dir
from liveresponse.protocol.errors import CommandFailed, NotAvailable

BUNDLE_NAME = "intel"
KEPT_ON_DISK = 3
KEPT_IN_MEMORY = 2
STALE_FETCH_S = 600.0
VERDICTS = ("malicious", "suspicious", "clean")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Intel:
    sha256: str
    indicators: dict[str, tuple[str, str]]  # sha256 -> (verdict, title)
    rules: CompiledRules
    source: str = "memory"  # where this command got it: memory, disk or server

    def with_source(self, source: str) -> Intel:
        return Intel(self.sha256, self.indicators, self.rules, source)


_lock = threading.Lock()  # one load at a time: a new bundle is fetched and compiled once
_loaded: OrderedDict[str, Intel] = OrderedDict()


def parse_bundle(sha256: str, document: Any) -> Intel:
    """The bundle's indicators and compiled rules; a malformed bundle is refused whole."""
    try:
        indicators: dict[str, tuple[str, str]] = {}
        for entry in document["iocs"]:
            digest, verdict, title = entry["sha256"], entry["verdict"], entry["title"]
            if not (isinstance(digest, str) and _SHA256_RE.fullmatch(digest)) or verdict not in VERDICTS:
                raise ValueError(f"indicator {digest!r} with verdict {verdict!r}")
            indicators[digest] = (verdict, str(title))
        rule_sets = [(str(entry["name"]), str(entry["source"])) for entry in document["rules"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandFailed(f"the intel bundle {sha256} from the server is malformed: {exc}") from None
    return Intel(sha256, indicators, compile_rule_sets(rule_sets))


def _read_verified(path: Path, sha256: str) -> Any | None:
    """The cached bundle's JSON when its bytes still have ``sha256``; a damaged copy is removed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        path.unlink(missing_ok=True)
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise CommandFailed(f"the intel bundle {sha256} is not JSON") from None


def _prune(folder: Path, keep: str) -> None:
    bundles = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in bundles if p.stem != keep][KEPT_ON_DISK - 1 :]:
        old.unlink(missing_ok=True)
    now = time.time()
    for leftover in folder.glob(".fetch-*"):
        if now - leftover.stat().st_mtime > STALE_FETCH_S:
            leftover.unlink(missing_ok=True)


def _from_disk_or_server(ctx: CommandContext, library: dict[str, Any], sha256: str) -> tuple[Any, str]:
    if ctx.state_dir is None:
        raise NotAvailable("this agent has no state directory for the analysis cache")
    folder = ctx.state_dir / "intel"
    ensure_private_dir(folder)
    path = folder / f"{sha256}.json"
    document = _read_verified(path, sha256)
    if document is not None:
        os.utime(path)  # recently used: pruned last
        return document, "disk"
    if ctx.files is None:
        raise NotAvailable("this agent has no working folder configured to fetch the intel bundle")
    fetched = ctx.files.fetch(library, folder, ctx.check_cancelled)  # verified by sha256 and size
    os.replace(fetched.path, path)
    _prune(folder, keep=sha256)
    document = _read_verified(path, sha256)
    if document is None:
        raise CommandFailed(f"the intel bundle {sha256} changed on disk right after it was fetched")
    return document, "server"


def load_intel(ctx: CommandContext) -> Intel:
    """The bundle the signed envelope names: from memory, from the cache folder, or fetched."""
    library = ctx.library
    if not library or library.get("name") != BUNDLE_NAME:
        raise CommandFailed("the analyze command came without the tenant's intel bundle; is the server up to date?")
    sha256 = str(library.get("sha256", ""))
    if not _SHA256_RE.fullmatch(sha256):
        raise CommandFailed(f"the intel bundle's sha256 {sha256!r} is not a sha256")
    with _lock:
        cached = _loaded.get(sha256)
        if cached is not None:
            _loaded.move_to_end(sha256)
            return cached.with_source("memory")
        document, source = _from_disk_or_server(ctx, library, sha256)
        intel = parse_bundle(sha256, document)
        _loaded[sha256] = intel
        while len(_loaded) > KEPT_IN_MEMORY:
            _loaded.popitem(last=False)
        return intel.with_source(source)

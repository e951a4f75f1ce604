"""The tenant's YARA rule sets: compiled once per intel bundle, matched against one opened file.

Each rule set is a namespace (its name), so a finding names ``<ruleset>:<rule>``.
Includes are refused: a rule set must not make the agent read other files. The
external variables below are defined for every scan (the server compiles with the
same names when a rule file is added, server/intel.py).

YARA maps the file itself; the agent hands it ``/proc/self/fd/N``, the very file
it opened and hashed, never the path again (which could have been swapped since).
A scan cannot be interrupted half-way, so it gets YARA's own timeout, bounded by
what is left of the command's timeout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yara

from liveresponse.protocol.errors import CommandFailed

Finding = dict[str, Any]

EXTERNALS = {"filename": "", "filepath": "", "extension": "", "filetype": ""}
_VERDICTS_FROM_META = ("malicious", "suspicious")
_STRINGS_SHOWN = 5
MAX_FINDINGS = 1000

# Findings use offsets only; the matched bytes YARA keeps per match are not needed.
yara.set_config(max_match_data=16)


@dataclass(frozen=True)
class CompiledRules:
    rules: yara.Rules | None  # None when the tenant has no rule set (or none compiled here)
    rule_sets: int = 0
    rule_count: int = 0
    problems: list[str] = field(default_factory=list)  # rule sets this device could not compile

    def describe(self) -> str:
        text = f"{_plural(self.rule_sets, 'rule set')}, {_plural(self.rule_count, 'rule')}"
        return "; ".join([text, *self.problems])


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _compile(sources: dict[str, str]) -> yara.Rules:
    return yara.compile(sources=sources, includes=False, externals=EXTERNALS)


def compile_rule_sets(rule_sets: list[tuple[str, str]]) -> CompiledRules:
    """(name, source) pairs into one compiled object. A set that does not compile with this device's YARA
    (the server checked it with its own) is left out and named; the others still run."""
    if not rule_sets:
        return CompiledRules(None)
    sources = dict(rule_sets)
    problems: list[str] = []
    try:
        rules = _compile(sources)
    except yara.Error:
        good: dict[str, str] = {}
        for name, source in sources.items():
            try:
                _compile({name: source})
            except yara.Error as exc:
                problems.append(f"rule set {name} does not compile on this device: {exc}")
            else:
                good[name] = source
        if not good:
            return CompiledRules(None, 0, 0, problems)
        rules = _compile(good)
        sources = good
    return CompiledRules(rules, len(sources), sum(1 for _ in rules), problems)


def _strings_text(match: Any) -> str:
    if not match.strings:
        return "condition only, no strings"
    parts = []
    for found in match.strings[:_STRINGS_SHOWN]:
        first = found.instances[0].offset if found.instances else None
        more = len(found.instances) - 1
        part = f"{found.identifier} at offset {first}"
        parts.append(part + (f" and {more} more" if more > 0 else ""))
    if len(match.strings) > _STRINGS_SHOWN:
        parts.append(f"{len(match.strings) - _STRINGS_SHOWN} more strings")
    return "strings " + ", ".join(parts)


def match_finding(match: Any) -> Finding:
    wanted = str(match.meta.get("verdict", "")).lower()
    return {
        "engine": "yara",
        "result": wanted if wanted in _VERDICTS_FROM_META else "malicious",
        "reason": f"YARA rule {match.rule} matched ({_strings_text(match)})",
        "rule": f"{match.namespace}:{match.rule}",
    }


def externals_for(location: bytes, kind: str | None) -> dict[str, str]:
    name = os.path.basename(location)
    extension = os.path.splitext(name)[1]
    return {
        "filename": name.decode("utf-8", "replace"),
        "filepath": location.decode("utf-8", "replace"),
        "extension": extension.decode("utf-8", "replace").lower(),
        "filetype": kind.upper() if kind else "",
    }


def _quiet(_message: str) -> None:
    """The ``console`` module's messages: a rule set does not get to write into the agent's output."""


def scan(compiled: CompiledRules, fd: int, externals: dict[str, str], timeout_s: float) -> list[Finding]:
    """Match every rule against the open file ``fd``; one finding per matching rule."""
    if compiled.rules is None:
        return []
    seconds = max(1, int(timeout_s))
    try:
        matches = compiled.rules.match(
            f"/proc/self/fd/{fd}", externals=externals, timeout=seconds, console_callback=_quiet
        )
    except yara.TimeoutError:
        message = f"the YARA scan did not finish within {seconds} s, what was left of the command's timeout"
        raise CommandFailed(message) from None
    except yara.Error as exc:
        raise CommandFailed(f"the YARA scan failed: {exc}") from None
    findings = [match_finding(m) for m in matches]
    if len(findings) <= MAX_FINDINGS:
        return findings
    # The result must fit one protocol frame: the rest in one finding, as severe as the worst of them.
    rest = findings[MAX_FINDINGS:]
    worst = "malicious" if any(f["result"] == "malicious" for f in rest) else "suspicious"
    reason = f"{len(rest)} more rules matched; the first {MAX_FINDINGS} are listed"
    return [*findings[:MAX_FINDINGS], {"engine": "yara", "result": worst, "reason": reason, "rule": None}]

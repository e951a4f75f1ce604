"""The one command catalogue (STYLE.md: every command declared once, read by all). Tier 1, pure."""

from __future__ import annotations

import pytest

from liveresponse.agent.commands.dispatch import handlers
from liveresponse.protocol.catalogue import COMMANDS, OUTPUT_PARAM, CommandSpec, ParamType, Runs, all_names, lookup
from liveresponse.protocol.commandline import parse_line

AGENT_COMMANDS = sorted(c.name for c in COMMANDS if c.runs is Runs.AGENT)


def test_every_agent_command_has_a_handler() -> None:
    table = handlers()
    missing = [name for name in AGENT_COMMANDS if name not in table]
    assert missing == []


def test_every_handler_is_an_agent_command_of_the_catalogue() -> None:
    stray = sorted(name for name in handlers() if name not in AGENT_COMMANDS)
    assert stray == []
    assert sorted(handlers()) == AGENT_COMMANDS
    assert all(callable(run) for run in handlers().values())


def test_console_commands_have_no_agent_handler() -> None:
    console = {c.name for c in COMMANDS if c.runs is Runs.CONSOLE}
    assert console & set(handlers()) == set()
    assert {"cls", "connect", "help", "jobs", "fg", "status", "trace"} <= console


def test_names_and_aliases_are_unique_and_lower_case() -> None:
    keys = [key for c in COMMANDS for key in (c.name, *c.aliases)]
    assert len(keys) == len(set(keys))
    assert [k for k in keys if k != k.lower() or not k or " " in k] == []
    assert all_names() == sorted(keys)


def test_spec_aliases() -> None:
    # SPEC §4: ls = dir, process = processes (download = getfile once getfile is in the catalogue)
    assert lookup("ls") is lookup("dir")
    assert lookup("process") is lookup("processes")
    if lookup("getfile") is not None:
        assert lookup("download") is lookup("getfile")


def test_parameter_names_are_unique_per_command() -> None:
    for spec in COMMANDS:
        names = [p.name.lower() for p in spec.all_params]
        assert len(names) == len(set(names)), spec.name
        assert OUTPUT_PARAM.name not in names, f"{spec.name} redeclares -output"


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_summary_and_example(spec: CommandSpec) -> None:
    assert spec.summary.strip()
    assert spec.example.strip()
    parsed = parse_line(spec.example)
    assert parsed.command == spec.name


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_usage_mentions_every_parameter(spec: CommandSpec) -> None:
    usage = spec.usage
    assert usage.split()[0] == spec.name
    for p in spec.positional:
        assert (f"<{p.display}>" if p.required else f"[{p.display}]") in usage, p.name
    for p in spec.named:
        if p.type is ParamType.FLAG:
            assert f"[-{p.name}]" in usage, p.name
        else:
            assert f"[-{p.name} {p.display.upper()}]" in usage, p.name
    assert usage.endswith("[-output json|table]")


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_required_positionals_come_first(spec: CommandSpec) -> None:
    # an optional positional before a required one could never be left out
    required = [p.required for p in spec.positional]
    assert required == sorted(required, reverse=True)


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_table_fields_are_json_fields(spec: CommandSpec) -> None:
    assert set(spec.table_fields) <= set(spec.fields)
    assert len(spec.fields) == len(set(spec.fields))


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_choice_parameters_have_lower_case_choices(spec: CommandSpec) -> None:
    for p in spec.all_params:
        if p.type is ParamType.CHOICE:
            assert p.choices and all(c == c.lower() for c in p.choices)
        else:
            assert p.choices == ()

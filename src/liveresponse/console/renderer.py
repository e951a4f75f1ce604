"""Pure rendering of results: JSON documents and tables (SPEC §4 output)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from liveresponse.protocol.catalogue import CommandSpec, ResultShape, Tier, grouped_by_tier


def render_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# Text from the device never drives the analyst's terminal: control characters show as \xHH (names.py).
_CONTROLS = re.compile("[\x00-\x1f\x7f]")


def _cell(value: Any, one_per_line: bool = False) -> str:
    """A value as table text. In one object's table a list shows one item per line (a remediation's
    actions, analyze's findings); in a listing it stays on one line (a command line's words)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ("\n" if one_per_line else " ").join(_cell(v, one_per_line) for v in value)
    if isinstance(value, dict):
        if one_per_line and all(not isinstance(v, dict | list) for v in value.values()):
            return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items() if v is not None)
        return json.dumps(value, ensure_ascii=False)
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _to_text(table: Table, width: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(table)
    return buffer.getvalue().rstrip("\n")


def table_columns(spec: CommandSpec, args: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    columns = list(spec.table_fields or spec.fields)
    if spec.name == "dir" and args.get("full_path"):
        columns = [("path" if c == "name" else c) for c in columns]
    if not columns and rows:
        columns = list(rows[0])
    return columns


def render_table(spec: CommandSpec, args: dict[str, Any], value: Any, width: int = 200) -> str:
    if spec.result_for(args) is ResultShape.ROWS and isinstance(value, list):
        columns = table_columns(spec, args, value)
        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in value:
            table.add_row(*(Text(_cell(row.get(c))) for c in columns))
        return _to_text(table, width) + f"\n({len(value)} {'row' if len(value) == 1 else 'rows'})"
    if isinstance(value, dict):
        keys = list(spec.table_fields or value.keys())
        extra = [k for k in value if k not in keys and k.endswith("reason")]
        table = Table(box=None, show_header=False, show_edge=False, pad_edge=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key in keys + extra:
            if key in value:
                table.add_row(key, Text(_cell(value[key], one_per_line=True)))
        return _to_text(table, width)
    return "" if value is None else _cell(value)


def render_help(width: int = 100) -> str:
    lines = []
    for group in grouped_by_tier():
        title = {Tier.BASIC: "Basic", Tier.ADVANCED: "Advanced", Tier.CONSOLE: "Console"}[group.tier]
        lines.append(f"{title} commands:")
        for spec in group.commands:
            names = spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else "")
            lines.append(f"  {names:24} {spec.summary}")
        lines.append("")
    lines.append("help NAME shows a command's usage. Add -output json to any command for JSON.")
    return "\n".join(lines)


def render_command_help(spec: CommandSpec) -> str:
    lines = [f"usage: {spec.usage}", f"tier: {spec.tier}", "", spec.summary]
    if spec.aliases:
        lines.append(f"aliases: {', '.join(spec.aliases)}")
    params = [p for p in spec.all_params]
    if params:
        lines.append("")
        lines.append("parameters:")
        for p in params:
            kind = "flag" if p.type.value == "flag" else p.type.value
            where = "positional or -" + p.name if p in spec.positional else "-" + p.name
            choices = f" (one of: {', '.join(p.choices)})" if p.choices else ""
            lines.append(f"  {p.name:12} {kind:7} {where:24} {p.help}{choices}")
    if spec.cancellable:
        lines.append("")
        lines.append("Ctrl+C cancels it on the device.")
    if spec.notes:
        lines.append("")
        lines.append(f"note: {spec.notes}")
    if spec.example:
        lines.append("")
        lines.append(f"example: {spec.example}")
    return "\n".join(lines)

"""``lr``: the one entry point (SPEC §3). Each subcommand builds its configuration here and hands it down."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from liveresponse import __version__
from liveresponse.protocol.errors import LiveResponseError

DEFAULT_DATA = Path.home() / ".local" / "share" / "liveresponse"


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("LR_DATA") or DEFAULT_DATA).expanduser().absolute()


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen takes HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lr", description="liveresponse: open live response")
    parser.add_argument("--version", action="version", version=f"liveresponse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="run the server")
    server.add_argument("--data")
    server.add_argument("--db")
    server.add_argument("--bus", default="inproc")
    server.add_argument("--listen", type=_listen, default=("127.0.0.1", 8443))
    server.add_argument("--public-url", default="")
    server.add_argument("--node-id", default="node-1")

    admin = sub.add_parser("admin", help="administer the store directly")
    admin.add_argument("--data")
    admin.add_argument("--db")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    admin_sub.add_parser("init")
    user = admin_sub.add_parser("user").add_subparsers(dest="user_command", required=True).add_parser("add")
    user.add_argument("name")
    user.add_argument("--role", required=True)
    user.add_argument("--tenant")
    user.add_argument("--password-stdin", action="store_true")
    token = admin_sub.add_parser("token").add_subparsers(dest="token_command", required=True).add_parser("create")
    token.add_argument("user")
    token.add_argument("--name", default="cli")
    token.add_argument("--expires-days", type=float)
    token.add_argument("--tenant")
    enroll = admin_sub.add_parser("enroll-token").add_subparsers(dest="enroll_command", required=True)
    enroll_create = enroll.add_parser("create")
    enroll_create.add_argument("--group")
    enroll_create.add_argument("--expires-hours", type=float, default=24.0)
    enroll_create.add_argument("--uses", type=int, default=1)
    enroll_create.add_argument("--tenant")
    enroll_create.add_argument("--server-url", help="URL the agents reach (default: the running server's)")
    group = admin_sub.add_parser("group").add_subparsers(dest="group_command", required=True).add_parser("add")
    group.add_argument("name")
    group.add_argument("--remediation-level", choices=("none", "semi", "full"), default="full")
    group.add_argument("--tenant")
    settings = admin_sub.add_parser("settings").add_subparsers(dest="settings_command", required=True)
    settings_set = settings.add_parser("set")
    settings_set.add_argument("key")
    settings_set.add_argument("value")
    settings_set.add_argument("--tenant")
    settings_show = settings.add_parser("show")
    settings_show.add_argument("--tenant")
    settings_show.add_argument("--output", choices=("json", "table"), default="table")
    audit = admin_sub.add_parser("audit").add_subparsers(dest="audit_command", required=True)
    audit.add_parser("verify")

    agent = sub.add_parser("agent", help="enroll or run the agent")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    agent_enroll = agent_sub.add_parser("enroll")
    agent_enroll.add_argument("--server", required=True)
    agent_enroll.add_argument("--token", required=True)
    agent_enroll.add_argument("--state")
    agent_enroll.add_argument("--device-type", choices=("workstation", "server"))
    agent_run = agent_sub.add_parser("run")
    agent_run.add_argument("--state")
    agent_run.add_argument("--root", default="/", help="collector root: examine another file-system root")

    login = sub.add_parser("login", help="sign in and store a credential")
    login.add_argument("--server", required=True)
    login.add_argument("--user", required=True)
    login.add_argument("--password-stdin", action="store_true")
    login.add_argument("--ca", help="the server's CA certificate (default LR_CA)")
    login.add_argument("--tenant")

    devices = sub.add_parser("devices", help="list devices")
    devices.add_argument("--output", choices=("json", "table"), default="table")

    sessions = sub.add_parser("sessions", help="list sessions, or end one")
    sessions.add_argument("action", nargs="?", choices=("end",))
    sessions.add_argument("id", nargs="?")
    sessions.add_argument("--all", action="store_true")
    sessions.add_argument("--output", choices=("json", "table"), default="table")

    log = sub.add_parser("log", help="the command log")
    log.add_argument("--session")
    log.add_argument("--output", choices=("json", "table"), default="table")

    console = sub.add_parser("console", help="open a console on a device")
    console.add_argument("device")
    console.add_argument("-c", action="append", dest="commands", metavar="LINE")
    console.add_argument("--output", choices=("json", "table"))

    demo = sub.add_parser("demo", help="run a server and agent on this machine and open a console")
    demo.add_argument("--data", default=".lr-demo")
    demo.add_argument("--port", type=int, default=8443)
    return parser


def _agent_state(value: str | None) -> Path:
    from liveresponse.agent.state import DEFAULT_STATE_DIR

    return Path(value).expanduser().absolute() if value else DEFAULT_STATE_DIR


def _print_rows(rows: list[dict[str, Any]], columns: list[str], output: str) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(width=200, highlight=False).print(table)


async def _client_call(args: argparse.Namespace) -> int:
    from liveresponse.client.api import Client
    from liveresponse.client.config import load_client_config

    client = Client(load_client_config())
    try:
        if args.command == "devices":
            _print_rows(
                await client.devices(),
                ["id", "name", "os", "type", "group", "status", "last_seen", "agent_version"],
                args.output,
            )
        elif args.command == "sessions":
            if args.action == "end":
                if not args.id:
                    raise LiveResponseError("usage: lr sessions end ID")
                ended = await client.end_session(args.id)
                print(f"session {ended['id']} ended")
            else:
                rows = await client.sessions(include_ended=args.all)
                _print_rows(rows, ["id", "device", "user", "started", "ended", "duration_s", "status"], args.output)
        elif args.command == "log":
            rows = await (client.session_log(args.session) if args.session else client.command_log())
            _print_rows(rows, ["id", "session_id", "user", "device", "status", "duration", "command_line"], args.output)
        return 0
    finally:
        await client.aclose()


def _login(args: argparse.Namespace) -> int:
    from liveresponse.client.api import login
    from liveresponse.client.config import save_credentials

    ca = args.ca or os.environ.get("LR_CA")
    if not ca:
        raise LiveResponseError(
            "pass --ca FILE or set LR_CA: the server's CA certificate (DIR/tls/ca.pem on the server)"
        )
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    answer = asyncio.run(login(args.server.rstrip("/"), ca, args.user, password, args.tenant))
    path = save_credentials(os.environ, args.server.rstrip("/"), answer["token"], Path(ca).read_bytes())
    print(f"signed in as {answer['user']} ({answer['role']}); credential stored in {path}")
    return 0


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "server":
        from liveresponse.server.config import ServerConfig, default_db_url
        from liveresponse.server.main import run

        if args.bus != "inproc":
            raise LiveResponseError(f"--bus {args.bus}: only the in-process bus (inproc) is in this version")
        data = _data_dir(args.data)
        host, port = args.listen
        config = ServerConfig(
            data, args.db or default_db_url(data), host, port, args.public_url, args.node_id, args.bus
        )
        return run(config)
    if args.command == "admin":
        from liveresponse.server.admin import run_admin
        from liveresponse.server.config import ServerConfig, default_db_url

        data = _data_dir(args.data)
        return asyncio.run(run_admin(ServerConfig(data, args.db or default_db_url(data)), args))
    if args.command == "agent":
        if args.agent_command == "enroll":
            from liveresponse.agent.enroll import enroll

            identity = enroll(args.server, args.token, _agent_state(args.state), args.device_type)
            print(f"enrolled as device {identity.device_id} with {identity.server_url}")
            return 0
        from liveresponse.agent.transport import run as run_agent

        return run_agent(_agent_state(args.state), root=args.root)
    if args.command == "login":
        return _login(args)
    if args.command in ("devices", "sessions", "log"):
        return asyncio.run(_client_call(args))
    if args.command == "console":
        from liveresponse.client.config import load_client_config
        from liveresponse.console.main import EXIT_NO_SESSION, console_main

        try:
            config = load_client_config()
        except LiveResponseError as exc:
            print(f"lr console: {exc.message}", file=sys.stderr)
            return EXIT_NO_SESSION
        return console_main(config, args.device, args.commands, args.output)
    if args.command == "demo":
        from liveresponse.demo import run_demo

        return run_demo(Path(args.data).absolute(), args.port)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except LiveResponseError as exc:
        print(f"lr {args.command}: {exc.message}", file=sys.stderr)
        return 2 if exc.code in ("connect", "unauthenticated") else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

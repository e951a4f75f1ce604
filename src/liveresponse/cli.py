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
from liveresponse.client import library_args
from liveresponse.protocol.errors import LiveResponseError

DEFAULT_DATA = Path.home() / ".local" / "share" / "liveresponse"


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("LR_DATA") or DEFAULT_DATA).expanduser().absolute()


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen takes HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _search_filters(parser: argparse.ArgumentParser, type_help: str) -> None:
    """The filters ``lr log`` and ``lr audit list`` share (SPEC §9)."""
    parser.add_argument("--user")
    parser.add_argument("--device", help="device id or host name")
    parser.add_argument("--type", help=type_help)
    parser.add_argument("--since", help="ISO 8601 time, e.g. 2024-05-01T12:00:00Z")
    parser.add_argument("--until", help="ISO 8601 time")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--output", choices=("json", "table", "csv"), default="table")


def _intel_parsers(admin_sub: Any) -> None:
    """``lr admin ioc ...`` and ``lr admin rules ...``: the tenant's indicators and YARA rules for analyze (SPEC §5)."""
    ioc = admin_sub.add_parser("ioc", help="the tenant's file hash indicators").add_subparsers(
        dest="ioc_command", required=True
    )
    ioc_add = ioc.add_parser("add", help="add an indicator, or update the one with this sha256")
    ioc_add.add_argument("sha256")
    ioc_add.add_argument("--verdict", choices=("malicious", "suspicious", "clean"), required=True)
    ioc_add.add_argument("--title", required=True)
    ioc_list = ioc.add_parser("list")
    ioc_list.add_argument("--output", choices=("json", "table"), default="table")
    ioc_delete = ioc.add_parser("delete")
    ioc_delete.add_argument("sha256")
    rules = admin_sub.add_parser("rules", help="the tenant's YARA rule sets").add_subparsers(
        dest="rules_command", required=True
    )
    rules_add = rules.add_parser("add", help="add a YARA rule file (compiled first), or replace the one of its name")
    rules_add.add_argument("file")
    rules_add.add_argument("--name", help="rule set name (default: the file name)")
    rules_list = rules.add_parser("list")
    rules_list.add_argument("--output", choices=("json", "table"), default="table")
    rules_delete = rules.add_parser("delete")
    rules_delete.add_argument("name")
    for command in (ioc_add, ioc_list, ioc_delete, rules_add, rules_list, rules_delete):
        command.add_argument("--tenant")


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
    user.add_argument("--groups", help="limit the role to these device groups (g1,g2); default: every group")
    tokens = admin_sub.add_parser("token").add_subparsers(dest="token_command", required=True)
    token = tokens.add_parser("create")
    token.add_argument("user")
    token.add_argument("--name", default="cli")
    token.add_argument("--expires-days", type=float)
    token.add_argument("--tenant")
    token_revoke = tokens.add_parser("revoke")
    token_revoke.add_argument("token", metavar="ID|TOKEN")
    token_revoke.add_argument("--tenant")
    admin_sub.add_parser("tenant").add_subparsers(dest="tenant_command", required=True).add_parser("add").add_argument(
        "name"
    )
    roles = admin_sub.add_parser("role").add_subparsers(dest="role_command", required=True)
    role_add = roles.add_parser("add")
    role_add.add_argument("name")
    role_add.add_argument("--permissions", required=True, help="comma-separated, e.g. devices.read,audit.read")
    role_add.add_argument("--tenant")
    role_assign = roles.add_parser("assign", help="give a user a role, optionally limited to device groups")
    role_assign.add_argument("user")
    role_assign.add_argument("role")
    role_assign.add_argument("--groups", help="limit the role to these device groups (g1,g2); default: every group")
    role_assign.add_argument("--tenant")
    enroll = admin_sub.add_parser("enroll-token").add_subparsers(dest="enroll_command", required=True)
    enroll_create = enroll.add_parser("create")
    enroll_create.add_argument("--group")
    enroll_create.add_argument("--expires-hours", type=float, default=24.0)
    enroll_create.add_argument("--uses", type=int, default=1)
    enroll_create.add_argument("--tenant")
    enroll_create.add_argument(
        "--device-type", choices=("workstation", "server"), help="the type of the devices it enrolls (else reported)"
    )
    enroll_create.add_argument("--server-url", help="URL the agents reach (default: the running server's)")
    groups = admin_sub.add_parser("group").add_subparsers(dest="group_command", required=True)
    group = groups.add_parser("add")
    group.add_argument("name")
    group.add_argument("--remediation-level", choices=("none", "semi", "full"), default="full")
    group.add_argument("--device-type", choices=("workstation", "server"), help="type of every device in the group")
    group.add_argument("--tenant")
    group_set = groups.add_parser("set")
    group_set.add_argument("name")
    group_set.add_argument("--remediation-level", choices=("none", "semi", "full"))
    group_set.add_argument("--device-type", choices=("workstation", "server", "reported"))
    group_set.add_argument("--tenant")
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
    publisher = admin_sub.add_parser("publisher").add_subparsers(dest="publisher_command", required=True)
    publisher_add = publisher.add_parser("add", help="trust a script publisher's Ed25519 key (PEM, OpenSSH, base64)")
    publisher_add.add_argument("name")
    publisher_add.add_argument("pubkey", help="a public key file (e.g. KEY.pub from lr library keygen) or the key")
    publisher_add.add_argument("--tenant")
    _intel_parsers(admin_sub)

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
    agent_run.add_argument(
        "--boot-id-file",
        default=os.environ.get("LR_AGENT_BOOT_ID_FILE"),
        help="where the boot id is read (default /proc/sys/kernel/random/boot_id; env LR_AGENT_BOOT_ID_FILE)",
    )
    agent_run.add_argument(
        "--policy",
        default=os.environ.get("LR_AGENT_POLICY"),
        help="this device's policy file (default /etc/liveresponse/agent-policy.toml when present; "
        "env LR_AGENT_POLICY): command classes it forbids, a getfile cap",
    )
    library_args.add_parser(sub)

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
    _search_filters(log, "command name, e.g. dir")
    log.add_argument("--status", choices=("pending", "running", "completed", "failed", "cancelled", "timed_out"))

    audit_list = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    _search_filters(audit_list.add_parser("list"), "event type, e.g. session.open, or a prefix: session")

    downloads = sub.add_parser("downloads", help="files collected with getfile")
    downloads.add_argument("action", choices=("list", "get"))
    downloads.add_argument("id", nargs="?")
    downloads.add_argument("--to", default=None, help="folder to save into (default ./downloads/<device>)")
    downloads.add_argument("--output", choices=("json", "table"), default="table")

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
    if output == "csv":  # every field, nested values as JSON: an export, not a view
        import csv

        fields = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: v if isinstance(v, str | int | float) or v is None else json.dumps(v) for k, v in row.items()}
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(width=200, highlight=False).print(table)


def _filters(args: argparse.Namespace, **more: str | None) -> dict[str, str]:
    values = {k: getattr(args, k) for k in ("user", "device", "type", "since", "until")} | more
    values["limit"] = str(args.limit)
    return {k: v for k, v in values.items() if v is not None}


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
        elif args.command == "downloads":
            from liveresponse.client.files import safe_name, save_download

            if args.action == "list":
                columns = ["id", "device", "path", "size", "sha256", "status", "created"]
                _print_rows(await client.downloads(), columns, args.output)
            else:
                if not args.id:
                    raise LiveResponseError("usage: lr downloads get ID [--to DIR]")
                info = await client.download(args.id)
                folder = Path(args.to) if args.to else Path("downloads") / safe_name(str(info["device"]))
                saved = await save_download(client, info, folder)
                print(f"saved {saved} ({info['size']} bytes, sha256 {info['sha256']})")
        elif args.command == "log":
            filters = _filters(args, session=args.session, status=args.status)
            rows = await client.command_log(**filters)
            _print_rows(rows, ["id", "session_id", "user", "device", "status", "duration", "command_line"], args.output)
        elif args.command == "audit":
            rows = await client.audit(**_filters(args))
            for row in rows if args.output == "table" else ():
                row["detail"] = json.dumps(row["detail"], ensure_ascii=False)
            _print_rows(rows, ["seq", "at", "actor", "event", "outcome", "detail"], args.output)
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

        boot_id_file = Path(args.boot_id_file) if args.boot_id_file else None
        policy_file = Path(args.policy) if args.policy else None
        return run_agent(_agent_state(args.state), root=args.root, boot_id_file=boot_id_file, policy_file=policy_file)
    if args.command == "library":
        from liveresponse.client import library as library_cli

        if args.library_command == "keygen":
            print(f"signing key {args.key}; public key {library_cli.keygen(Path(args.key))}")
            return 0
        return asyncio.run(library_cli.library_main(args, _print_rows))
    if args.command == "login":
        return _login(args)
    if args.command in ("devices", "sessions", "log", "downloads", "audit"):
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

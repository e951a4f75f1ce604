"""connections: sockets opened by the test are listed with the test's pid."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from liveresponse.agent import platform
from liveresponse.agent.commands import connections
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.process_table import boot_time_s, read_process
from liveresponse.agent.platform.linux.sockets import connection_rows, decode_address
from liveresponse.protocol.errors import CommandFailed, NotAvailable
from liveresponse.protocol.names import escape_bytes


@pytest.fixture
def opened() -> Iterator[dict[str, socket.socket]]:
    made: dict[str, socket.socket] = {}
    for family, host, proto in ((socket.AF_INET, "127.0.0.1", "tcp"), (socket.AF_INET6, "::1", "tcp6")):
        server = socket.socket(family, socket.SOCK_STREAM)
        server.bind((host, 0))
        server.listen()
        client = socket.create_connection((host, server.getsockname()[1]))
        accepted, _ = server.accept()
        made |= {f"{proto}-listen": server, f"{proto}-client": client, f"{proto}-accepted": accepted}
    for family, host, proto in ((socket.AF_INET, "127.0.0.1", "udp"), (socket.AF_INET6, "::1", "udp6")):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        made[proto] = udp
    yield made
    for sock in made.values():
        sock.close()


def find(rows: list[dict], proto: str, port: int, state: str) -> dict:
    matches = [r for r in rows if r["proto"] == proto and r["local_port"] == port and r["state"] == state]
    assert len(matches) == 1, (proto, port, state, matches)
    return matches[0]


def test_test_sockets_show_this_pid(opened: dict[str, socket.socket]) -> None:
    rows = list(connections.run(CommandContext(), {}))
    me = os.getpid()
    name = escape_bytes(read_process(me, boot_time_s()).full_name)  # the name processes shows
    for proto, host in (("tcp", "127.0.0.1"), ("tcp6", "::1")):
        listen = find(rows, proto, opened[f"{proto}-listen"].getsockname()[1], "LISTEN")
        assert (listen["local_address"], listen["remote_address"], listen["remote_port"]) == (host, None, None)
        assert (listen["pid"], listen["process"], listen["owner_unknown_reason"]) == (me, name, None)
        client_port = opened[f"{proto}-client"].getsockname()[1]
        server_port = opened[f"{proto}-listen"].getsockname()[1]
        client = find(rows, proto, client_port, "ESTABLISHED")
        assert (client["remote_address"], client["remote_port"], client["pid"]) == (host, server_port, me)
        accepted = [r for r in rows if r["proto"] == proto and r["local_port"] == server_port
                    and r["remote_port"] == client_port]  # fmt: skip
        assert [(r["state"], r["pid"]) for r in accepted] == [("ESTABLISHED", me)]
    for proto, host in (("udp", "127.0.0.1"), ("udp6", "::1")):
        udp = find(rows, proto, opened[proto].getsockname()[1], "UNCONN")
        assert (udp["local_address"], udp["pid"], udp["process"]) == (host, me, name)
    assert all(r["pid"] is None or r["pid"] > 0 for r in rows)


def test_unknown_owner_is_null_with_a_reason(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    listening = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4242 1 0 100 0 0 10 0"
    time_wait = "1: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000000 00000000 0 0 0 3 0"
    (net / "tcp").write_text(f"{header}   {listening}\n   {time_wait}\n")
    (net / "tcp6").write_text(header)
    (net / "udp").write_text(header)
    rows = list(connection_rows(str(tmp_path)))
    listen, time_wait = rows[0], rows[1]
    assert (listen["pid"], listen["process"]) == (None, None)
    assert listen["owner_unknown_reason"] == f"socket inode 4242 not found in any readable {tmp_path}/PID/fd"
    assert (time_wait["state"], time_wait["remote_port"], time_wait["pid"]) == ("TIME_WAIT", 50000, None)
    assert time_wait["owner_unknown_reason"].startswith("no inode")
    assert rows[2]["proto"] == "udp6" and rows[2]["checked"] is False


def test_addresses_decode_like_ss() -> None:
    assert decode_address("0100007F:0050") == ("127.0.0.1", 80)
    assert decode_address("00000000000000000000000001000000:0016") == ("::1", 22)
    assert decode_address("0000000000000000FFFF00000100007F:1F90") == ("::ffff:127.0.0.1", 8080)
    assert decode_address("B80D0120000000000000000001000000:01BB") == ("2001:db8::1", 443)


def test_offline_root_is_refused() -> None:
    with pytest.raises(CommandFailed, match="offline"):
        list(connections.run(CommandContext(root="/mnt/image"), {}))


def test_other_platforms_are_told_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "current", lambda: "windows")
    with pytest.raises(NotAvailable, match="connections is not available on windows"):
        connections.run(CommandContext(), {})

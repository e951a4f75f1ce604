"""TCP and UDP sockets from /proc/net/{tcp,tcp6,udp,udp6}, with their owners.

Addresses in /proc are hex: IPv4 as one little-endian 32-bit word, IPv6 as
four little-endian 32-bit words. The owner is found by the socket inode in
``/proc/PID/fd`` links (``socket:[INODE]``). An owner that cannot be found is
null with ``owner_unknown_reason`` (SPEC §5: never -1): inode 0 means the kernel
holds the socket alone (TIME_WAIT, orphaned); otherwise no readable fd table
has it — another network namespace, a process that exited, or fd tables we
may not read (their number is given).

Only the agent's own network namespace is visible, as with netstat and ss.
A socket held by several processes (after fork) is shown with the lowest pid
and all of them in ``pids``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process, socket_owners
from liveresponse.protocol.names import escape_bytes

TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
PROTOCOL_FILES = (("tcp", "tcp"), ("tcp6", "tcp6"), ("udp", "udp"), ("udp6", "udp6"))


@dataclass(frozen=True)
class Socket:
    proto: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    uid: int
    inode: int


def decode_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ("127.0.0.1", 8080); IPv6 likewise."""
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1])), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    mapped = address.ipv4_mapped
    # Python 3.11 prints ::ffff:7f00:1; ss and netstat print ::ffff:127.0.0.1.
    return (f"::ffff:{mapped}" if mapped else str(address)), int(port, 16)


def parse_proc_net(data: str, proto: str) -> list[Socket]:
    sockets: list[Socket] = []
    for line in data.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, local_port = decode_address(fields[1])
        remote, remote_port = decode_address(fields[2])
        code = int(fields[3], 16)
        if proto.startswith("tcp"):
            state = TCP_STATES.get(code, f"UNKNOWN({code})")
        else:
            # UDP reuses TCP_ESTABLISHED for connected sockets and TCP_CLOSE for the rest.
            state = "ESTABLISHED" if code == 1 else "UNCONN"
        sockets.append(Socket(proto, local, local_port, remote, remote_port, state, int(fields[7]), int(fields[9])))
    return sockets


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return None


def list_sockets(proc: str = "/proc") -> tuple[list[Socket], list[str]]:
    """Every socket, and the /proc/net files that could not be read."""
    sockets: list[Socket] = []
    missing: list[str] = []
    for proto, file_name in PROTOCOL_FILES:
        data = _read(f"{proc}/net/{file_name}")
        if data is None:
            missing.append(f"{proc}/net/{file_name}")
            continue
        sockets.extend(parse_proc_net(data, proto))
    return sockets, missing


def _unspecified(address: str, port: int) -> bool:
    return port == 0 and ipaddress.ip_address(address).is_unspecified


def _process_name(pid: int, boot_s: float, proc: str) -> str | None:
    """The name ``processes`` shows for the same pid; None when it exited meanwhile."""
    try:
        return escape_bytes(read_process(pid, boot_s, proc).full_name)
    except ProcessGone:
        return None


def connection_rows(proc: str = "/proc") -> Iterator[dict[str, Any]]:
    sockets, missing = list_sockets(proc)
    owners = socket_owners(proc)
    names: dict[int, str | None] = {}
    boot_s: float | None = None  # read once, and only when some socket has an owner
    for sock in sockets:
        pids = sorted(owners.by_inode.get(sock.inode, [])) if sock.inode else []
        reason = None
        if not sock.inode:
            reason = "no inode: the kernel holds this socket alone (e.g. TIME_WAIT), no process owns it"
        elif not pids:
            reason = f"socket inode {sock.inode} not found in any readable {proc}/PID/fd"
            if owners.unreadable:
                reason += f" ({owners.unreadable} fd tables could not be read)"
        pid = pids[0] if pids else None
        if pid is not None and pid not in names:
            boot_s = boot_time_s(proc) if boot_s is None else boot_s
            names[pid] = _process_name(pid, boot_s, proc)
        remote_unset = _unspecified(sock.remote_address, sock.remote_port)
        yield {
            "proto": sock.proto,
            "local_address": sock.local_address,
            "local_port": sock.local_port,
            # A listening or unconnected socket has no peer: null, not 0.0.0.0:0.
            "remote_address": None if remote_unset else sock.remote_address,
            "remote_port": None if remote_unset else sock.remote_port,
            "state": sock.state,
            "pid": pid,
            "process": names.get(pid) if pid is not None else None,
            "owner_unknown_reason": reason,
            "pids": pids,
            "uid": sock.uid,
            "inode": sock.inode,
        }
    for path in missing:
        yield {
            "proto": path.rsplit("/", 1)[1], "local_address": None, "local_port": None, "remote_address": None,
            "remote_port": None, "state": None, "pid": None, "process": None, "owner_unknown_reason": None,
            "checked": False, "reason": f"not checked: cannot read {path}",
        }  # fmt: skip

"""Processes a remediation never stops: the agent and its ancestors, and the server the agent reports to.

Stopping the agent or a process above it (the shell or service manager that
started it) would end the remediation half-way. Stopping the liveresponse server
this agent is connected to, when it runs on this host, would cut the session and
lose the audit of the very remediation that stopped it. The server is found from
the agent's server URL (``ctx.files.server_url``, agent/workfolder.py): when its
host is a loopback or local address (one this host can bind), the processes that
own a listening TCP socket on that port, on that address or on the unspecified
one, are the server (sockets.py reads the sockets, process_table.py their owners).
A server on another host is never protected: its pids mean nothing here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process, socket_owners
from liveresponse.agent.platform.linux.sockets import list_sockets

DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def agent_and_ancestors() -> set[int]:
    """This process and every process above it: stopping one of them would stop the agent half-way."""
    pids: set[int] = set()
    pid = os.getpid()
    boot_s = boot_time_s()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        try:
            pid = read_process(pid, boot_s).ppid
        except ProcessGone:
            break
    return pids


def server_url_of(files: Any) -> str | None:
    """The server URL of the agent's working folder (``ctx.files``), None when the command runs without one."""
    url = getattr(files, "server_url", None)
    return url if isinstance(url, str) and url else None


def server_refusal(pid: int) -> str:
    """The words of a refusal to stop the server (the caller adds what was not done)."""
    return f"pid {pid} is the liveresponse server this agent reports to: stopping it would cut the session"


def server_pids(server_url: str | None, proc: str = "/proc") -> set[int]:
    """The pids of the server at ``server_url`` when it listens on this host; empty when it does not."""
    if not server_url:
        return set()
    try:
        parts = urlsplit(server_url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return set()
    if parts.hostname is None or port is None:
        return set()
    addresses = local_addresses_of(parts.hostname)
    if not addresses:
        return set()
    sockets, _ = list_sockets(proc)
    listening = [s for s in sockets if s.proto.startswith("tcp") and s.state == "LISTEN" and s.local_port == port]
    if not listening:
        return set()
    owners = socket_owners(proc)
    pids: set[int] = set()
    for sock in listening:
        bound = _plain(ipaddress.ip_address(sock.local_address))
        if bound.is_unspecified or bound in addresses:
            pids.update(owners.by_inode.get(sock.inode, []))
    return pids


def cgroup_leaf(pid: int, proc: str = "/proc") -> str | None:
    """The last part of the process's cgroup (``NAME.service`` for a systemd service's process), or None."""
    try:
        with open(f"{proc}/{pid}/cgroup", "rb") as cgroups:
            lines = cgroups.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    # The unified hierarchy ("0::/system.slice/x.service"), else systemd's own one on a v1 system.
    paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines if line.count(":") >= 2}
    path = paths.get("") or paths.get("name=systemd")
    if not path:
        return None
    return path.rstrip("/").rsplit("/", 1)[-1] or None


def local_addresses_of(host: str) -> set[Address]:
    """The addresses ``host`` names that belong to this host (loopback, or bindable here); empty: it is remote."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    found: set[Address] = set()
    for family, _, _, _, sockaddr in infos:
        try:
            address = _plain(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            continue
        if address.is_loopback or _bindable(family, sockaddr):
            found.add(address)
    return found


def _plain(address: Address) -> Address:
    """An IPv4 address mapped into IPv6 (``::ffff:127.0.0.1``) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bindable(family: int, sockaddr: tuple[Any, ...]) -> bool:
    """Whether a socket can be bound to this address: the kernel allows that only for its own addresses."""
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((sockaddr[0], 0, *sockaddr[2:]))
        return True
    return False

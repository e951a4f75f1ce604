"""A throwaway deployment of real processes on loopback: ``lr server`` and ``lr agent``.

Tests (and benchmarks) drive it through the real CLI and console. Nothing is
faked: the processes are the ones a user starts, with their own TLS, store,
enrollment and signed commands.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROLES_FOR_TESTS = {
    "alice": "admin",
    "rita": "responder",
    "vera": "viewer",
    "adam": "advanced-responder",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "liveresponse.cli", *args]


class ClusterError(RuntimeError):
    pass


class Cluster:
    def __init__(self, base: Path | None = None, db_url: str | None = None, agent_args: Sequence[str] = ()) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="lr-cluster-"))
        self.data = self.base / "server"
        self.agent_state = self.base / "agent"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.db_url = db_url
        self.agent_args = list(agent_args)
        self.tokens: dict[str, str] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.device_id = ""

    @property
    def ca(self) -> str:
        return str(self.data / "tls" / "ca.pem")

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def _db_args(self) -> list[str]:
        return ["--data", str(self.data)] + (["--db", self.db_url] if self.db_url else [])

    def admin(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            lr_command("admin", *self._db_args(), *args), input=stdin, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise ClusterError(f"lr admin {' '.join(args)} failed: {result.stderr}")
        return result

    def start(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.admin("init")
        for user, role in ROLES_FOR_TESTS.items():
            self.admin("user", "add", user, "--role", role, "--password-stdin", stdin=f"pw-{user}\n")
            self.tokens[user] = self.admin("token", "create", user).stdout.strip()
        self.admin("settings", "set", "live_response_enabled", "true")
        self.admin("settings", "set", "live_response_servers_enabled", "true")
        self.start_server()
        token = self.admin("enroll-token", "create", "--server-url", self.url).stdout.strip()
        enrolled = subprocess.run(
            lr_command("agent", "enroll", "--server", self.url, "--token", token, "--state", str(self.agent_state)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if enrolled.returncode != 0:
            raise ClusterError(f"enroll failed: {enrolled.stderr}")
        self.device_id = enrolled.stdout.split("device ")[1].split()[0]
        self.start_agent()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.base / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(lr_command(*args), stdout=log, stderr=subprocess.STDOUT)

    def start_server(self) -> None:
        self.server = self._spawn("server", ["server", *self._db_args(), "--listen", f"127.0.0.1:{self.port}"])
        self._wait(self._server_up, "server")

    def start_agent(self, wait: bool = True) -> None:
        self.agent = self._spawn("agent", ["agent", "run", "--state", str(self.agent_state), *self.agent_args])
        if wait:
            self._wait(self.agent_online, "agent")

    def _server_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", verify=self.tls(), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def agent_online(self) -> bool:
        try:
            with self.api("alice") as client:
                rows = client.get("/api/v1/devices").json()
        except (httpx.HTTPError, ValueError):
            return False
        return any(r["id"] == self.device_id and r["status"] == "online" for r in rows)

    def _wait(self, check: Any, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.base.glob("*.log"))
        raise ClusterError(f"{what} not up within {timeout_s} s\n{logs}")

    def env(self, user: str = "alice") -> dict[str, str]:
        env = dict(os.environ)
        env.update(LR_SERVER=self.url, LR_TOKEN=self.tokens[user], LR_CA=self.ca, HOME=str(self.base / "home"))
        return env

    def api(self, user: str = "alice") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=self.tls(), headers={"authorization": f"Bearer {self.tokens[user]}"}, timeout=30
        )

    def console(
        self,
        *lines: str,
        user: str = "alice",
        device: str | None = None,
        output: str | None = None,
        stdin: str | None = None,
        cwd: Path | None = None,
        timeout_s: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        args = ["console", device or self.device_id]
        for line in lines:
            args += ["-c", line]
        if output:
            args += ["--output", output]
        return subprocess.run(
            lr_command(*args),
            env=self.env(user),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=cwd,
        )

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.agent, sig)
        self.agent = None

    def stop(self) -> None:
        self.stop_agent()
        _stop(self.server, signal.SIGTERM)
        self.server = None


def _stop(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

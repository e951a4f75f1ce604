"""``lr demo`` (SPEC §2): a server and an agent for this very machine, and a console on it.

Everything lives under the demo directory (default ./.lr-demo): the server's
data, the agent's state, logs and the demo login. Leaving the console stops
what the demo started.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from liveresponse.agent.enroll import enroll
from liveresponse.agent.state import AgentState
from liveresponse.client.config import ClientConfig
from liveresponse.console.main import console_main
from liveresponse.protocol.enrollment import make_enroll_token
from liveresponse.protocol.errors import LiveResponseError
from liveresponse.server.config import ServerConfig, default_db_url
from liveresponse.server.credentials import hash_password, new_api_token, token_hash
from liveresponse.server.main import prepare

DEMO_USER = "demo"


class DemoError(LiveResponseError):
    code = "demo"


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _prepare_store(config: ServerConfig, url: str, demo_dir: Path) -> tuple[str, str, str | None]:
    """Admin, settings, enrollment token and an API token. Returns (password, api_token, enroll_token)."""
    store, pki = await prepare(config)
    try:
        tenant = await store.ensure_tenant()
        login_file = demo_dir / "demo-login.json"
        user = await store.user_by_name(tenant.id, DEMO_USER)
        if user is None or not login_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = await store.add_user(tenant.id, DEMO_USER, "admin", hash_password(password), "demo")
            else:
                async with store.tx() as db:
                    db_user = await db.get(type(user), user.id)
                    assert db_user is not None
                    db_user.password_hash = hash_password(password)
            login_file.write_text(json.dumps({"user": DEMO_USER, "password": password}))
            login_file.chmod(0o600)
        password = json.loads(login_file.read_text())["password"]
        for key in ("live_response_enabled", "live_response_servers_enabled"):
            await store.set_setting(tenant.id, key, "true", "demo")
        api_token = new_api_token()
        await store.add_token(user.id, "demo", token_hash(api_token), time.time() + 86400)
        enroll_token = None
        if not AgentState(demo_dir / "agent").identity_path.exists():
            enroll_token, secret = make_enroll_token(url, pki.fingerprint())
            await store.add_enroll_token(tenant.id, None, token_hash(secret), time.time() + 600, 1, "demo")
        return password, api_token, enroll_token
    finally:
        await store.close()


def _wait_for(
    check: object, what: str, timeout_s: float, log: Path, proc: subprocess.Popen[bytes], log_start: int
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise DemoError(
                f"{what} exited (status {proc.returncode}); its log of this run:\n{_log_since(log, log_start)}"
            )
        time.sleep(0.2)
    raise DemoError(
        f"{what} did not come up within {timeout_s:g} s; its log of this run:\n{_log_since(log, log_start)}"
    )


def _log_since(log: Path, start: int) -> str:
    """The lines a process wrote to its log in this run (the demo appends across runs)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()
    return "\n".join(lines[-30:])


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "liveresponse.cli", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_demo(demo_dir: Path, port: int) -> int:
    demo_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _port_free(port):
        raise DemoError(f"port {port} on 127.0.0.1 is taken; run 'lr demo --port N' with a free port")
    url = f"https://127.0.0.1:{port}"
    server_dir = demo_dir / "server"
    config = ServerConfig(server_dir, default_db_url(server_dir), "127.0.0.1", port)
    password, api_token, enroll_token = asyncio.run(_prepare_store(config, url, demo_dir))
    ca = str(server_dir / "tls" / "ca.pem")
    tls = ssl.create_default_context(cafile=ca)  # made by _prepare_store
    server_log, agent_log = demo_dir / "server.log", demo_dir / "agent.log"
    server = agent = None
    try:
        server_log_start = _log_size(server_log)
        server = _spawn(["server", "--data", str(server_dir), "--listen", f"127.0.0.1:{port}"], server_log)

        def server_up() -> bool:
            try:
                return httpx.get(f"{url}/api/v1/health", verify=tls, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(server_up, "the server", 30, server_log, server, server_log_start)
        agent_state = demo_dir / "agent"
        if enroll_token is not None:
            enroll(url, enroll_token, agent_state)
        device_id = AgentState(agent_state).load_identity().device_id
        agent_log_start = _log_size(agent_log)
        agent = _spawn(["agent", "run", "--state", str(agent_state)], agent_log)
        headers = {"authorization": f"Bearer {api_token}"}

        def agent_up() -> bool:
            try:
                rows = httpx.get(f"{url}/api/v1/devices", verify=tls, headers=headers, timeout=1).json()
            except (httpx.HTTPError, ValueError):
                return False
            return any(r.get("id") == device_id and r.get("status") == "online" for r in rows)

        _wait_for(agent_up, "the agent", 30, agent_log, agent, agent_log_start)
        print(f"liveresponse demo: server {url}, device {socket.gethostname()} ({device_id})")
        print(f"  API and OpenAPI docs: {url}/api/v1/docs  (CA certificate: {ca})")
        print(f"  login: user {DEMO_USER}, password {password}")
        print(f"  from another terminal: LR_SERVER={url} LR_CA={ca} LR_TOKEN={api_token} lr devices")
        print("  logs: " + f"{server_log}, {agent_log}")
        sys.stdout.flush()
        return console_main(ClientConfig(url, api_token, ca), device_id, None, None)
    finally:
        _stop(agent)
        _stop(server)
        os.environ.pop("LR_TOKEN", None)

"""Round trip of `dir` on a 10-entry directory through the console's client path, beside OpenSSH.

    .venv/bin/python bench/rtt.py [--runs 300]

Ours: a real `lr server` and `lr agent` on loopback (liveresponse.testing.cluster), a session already
open, each run one line over the console channel until its `done`. Anchor: `ssh host ls DIR` over a
ControlMaster connection to an sshd this script starts on a spare port. Target: p50 <= 5 ms, p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from liveresponse.client.api import Client
from liveresponse.client.config import ClientConfig
from liveresponse.testing.cluster import Cluster, free_port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def time_ours(cluster: Cluster, directory: Path, runs: int) -> list[float]:
    client = Client(ClientConfig(cluster.url, cluster.tokens["alice"], cluster.ca))
    session = await client.open_session(cluster.device_id)
    times: list[float] = []
    try:
        async with client.console_channel(session["id"]) as channel:
            line = f'dir "{directory}" -output json'
            for i in range(runs + 20):
                start = time.perf_counter()
                await channel.send_line(line)
                rows = 0
                while True:
                    event = await channel.next_event()
                    if event["type"] == "rows":
                        rows += len(event["rows"])
                    elif event["type"] in ("done", "error"):
                        rows += len(event.get("tail_rows") or [])
                        break
                elapsed = time.perf_counter() - start
                if event["type"] != "done" or event["status"] != "completed" or rows != 10:
                    raise SystemExit(f"bad result: {event} rows={rows}")
                if i >= 20:  # warm-up
                    times.append(elapsed)
    finally:
        await client.end_session(session["id"])
        await client.aclose()
    return times


def start_sshd(work: Path) -> tuple[list[str], Callable[[], None]] | str:
    """An sshd on a spare loopback port with a throwaway key; returns the ssh command prefix and a stopper."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if sshd is None:
        return "sshd not installed (apt-get install openssh-server)"
    port = free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key")], check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    os.chmod(work / "authorized_keys", 0o600)
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\n"
        f"PidFile {work / 'sshd.pid'}\nPermitRootLogin yes\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    daemon = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    base = [
        "ssh",
        "-p",
        str(port),
        "-i",
        str(work / "client_key"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={work / 'known_hosts'}",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={work / 'cm'}",
        "-o",
        "ControlPersist=60",
        "-o",
        "LogLevel=ERROR",
        "127.0.0.1",
    ]
    for _ in range(50):
        if subprocess.run([*base, "true"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)

    def stop() -> None:
        subprocess.run([*base, "-O", "exit"], capture_output=True)
        daemon.terminate()
        daemon.wait(10)

    return base, stop


def time_ssh(directory: Path, runs: int, work: Path) -> list[float] | str:
    started = start_sshd(work)
    if isinstance(started, str):
        return started
    base, stop = started
    try:
        times: list[float] = []
        for i in range(runs + 20):
            start = time.perf_counter()
            out = subprocess.run([*base, "ls", shlex.quote(str(directory))], capture_output=True, check=True)
            elapsed = time.perf_counter() - start
            if len(out.stdout.splitlines()) != 10:
                raise SystemExit("ssh ls did not list 10 entries")
            if i >= 20:
                times.append(elapsed)
        return times
    finally:
        stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-rtt-"))
    directory = work / "ten entries"
    directory.mkdir()
    for i in range(10):
        (directory / f"file {i}.txt").write_bytes(b"x" * i)
    cluster = Cluster(work / "cluster").start()
    try:
        ours = asyncio.run(time_ours(cluster, directory, args.runs))
    finally:
        cluster.stop()
    ssh = time_ssh(directory, args.runs, work)
    p50, p99 = percentile(ours, 0.5) * 1000, percentile(ours, 0.99) * 1000
    print(
        f"liveresponse dir (console channel, {args.runs} runs): p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
        f"mean {statistics.mean(ours) * 1000:.2f} ms   target p50 <= 5 ms, p99 <= 20 ms"
    )
    if isinstance(ssh, str):
        print(f"anchor: {ssh}")
    else:
        s50, s99 = percentile(ssh, 0.5) * 1000, percentile(ssh, 0.99) * 1000
        print(f"ssh ls over ControlMaster ({args.runs} runs):      p50 {s50:.2f} ms  p99 {s99:.2f} ms")
        print(f"ratio liveresponse/ssh: p50 {p50 / s50:.2f}  p99 {p99 / s99:.2f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

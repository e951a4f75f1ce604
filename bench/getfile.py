"""getfile of a 1 GiB random file from the agent to the console's disk, beside ssh cat (SPEC §7).

    .venv/bin/python bench/getfile.py [--mib 1024]

Ours: real `lr server` and `lr agent` on loopback; `lr console DEVICE -c "getfile FILE -auto"` until the
file is saved under ./downloads and its sha256 checked (device, server and console each check it).
Anchor: `ssh -c aes128-gcm@openssh.com 127.0.0.1 cat FILE > out` to an sshd this script starts.
Prints MB/s for both, the ratio, and the peak RSS of server, agent and console during the transfer.
Targets: >= 800 MB/s, >= 1.6x ssh, every process <= 200 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from rtt import start_sshd

from liveresponse.testing.cluster import Cluster, lr_command

MB = 1_000_000


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


class PeakRss:
    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.procs[name] = psutil.Process(pid)
        self.peak.setdefault(name, 0)

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, proc in list(self.procs.items()):
                with contextlib.suppress(psutil.Error):  # a process that just ended
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
            time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="lr-bench-getfile-"))
    source = work / "random.bin"
    with open(source, "wb") as fh:
        for _ in range(args.mib):
            fh.write(os.urandom(1 << 20))
    digest = sha256_of(source)
    cluster = Cluster(work / "cluster").start()
    try:
        assert cluster.server is not None and cluster.agent is not None
        rss = PeakRss({"server": cluster.server.pid, "agent": cluster.agent.pid})
        rss.thread.start()
        analyst = work / "analyst"
        analyst.mkdir()
        start = time.perf_counter()
        console = subprocess.Popen(
            lr_command("console", cluster.device_id, "-c", f'getfile "{source}" -auto'),
            env=cluster.env(),
            cwd=analyst,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        rss.watch("console", console.pid)
        _out, err = console.communicate(timeout=600)
        ours_s = time.perf_counter() - start
        rss.stop.set()
        if console.returncode != 0:
            raise SystemExit(f"getfile failed: {err.decode(errors='replace')}")
        saved = next((analyst / "downloads").rglob("random.bin"))
        if sha256_of(saved) != digest:
            raise SystemExit("sha256 of the saved copy differs")
    finally:
        cluster.stop()
    ssh = start_sshd(work)
    anchor_s: float | None = None
    if isinstance(ssh, str):
        note = ssh
    else:
        base, stop_sshd = ssh
        try:
            out = work / "ssh-copy.bin"
            start = time.perf_counter()
            with open(out, "wb") as fh:
                cmd = [*base[:1], "-c", "aes128-gcm@openssh.com", *base[1:], "cat", shlex.quote(str(source))]
                subprocess.run(cmd, stdout=fh, check=True)
            anchor_s = time.perf_counter() - start
            if sha256_of(out) != digest:
                raise SystemExit("ssh copy differs")
            note = ""
        finally:
            stop_sshd()
    ours_mbs = size / ours_s / MB
    print(f"file: {args.mib} MiB random, sha256 verified end to end")
    print(f"liveresponse getfile (console to disk): {ours_s:.2f} s  {ours_mbs:.0f} MB/s   target >= 800 MB/s")
    if anchor_s is not None:
        ssh_mbs = size / anchor_s / MB
        print(f"ssh -c aes128-gcm cat > file:            {anchor_s:.2f} s  {ssh_mbs:.0f} MB/s")
        print(f"ratio liveresponse/ssh: {ours_mbs / ssh_mbs:.2f}   target >= 1.6")
    else:
        print(f"anchor: {note}")
    for name, peak in rss.peak.items():
        print(f"peak RSS {name}: {peak / MB:.0f} MB   target <= 200 MB")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

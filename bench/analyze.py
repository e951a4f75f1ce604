"""`analyze file` on a 100 MiB file with 50 YARA rules, beside Debian's `yara` command (SPEC §5, §13).

    .venv/bin/python bench/analyze.py [--mib 100] [--runs 9]

The file: random bytes with a few strings planted at known offsets. The rules (generated here, 50 of
them): text strings (some nocase or wide), hex strings with jumps, regular expressions, and conditions
on filesize and uint16(0).

Ours, two ways:
  - the real path: a real `lr server` and `lr agent` on loopback, the rules added with `lr admin rules add`,
    a session open, each run one `analyze file PATH` line over the console channel until its `done`; a
    warm-up run first fetches the intel bundle and compiles it, so the runs measure the cached case;
  - the agent's engines alone, in this process: open, sha256 of the content, the YARA scan, heuristics
    (the bundle compiled beforehand), as the handler runs them.
Anchor: `yara -s rules.yar FILE` (Debian's yara command; it compiles the same rules on every run).
The three are interleaved run by run, so a busy moment of the machine hits all alike; median of the
runs, the file in the page cache for everyone; MB/s for each and the ratios. All three must find the
same rules, or the figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from liveresponse.agent.analysis.engines import Limits, examine, sha256_of
from liveresponse.agent.analysis.intel import parse_bundle
from liveresponse.agent.analysis.target import open_file
from liveresponse.agent.analysis.yara_rules import externals_for, scan
from liveresponse.client.api import Client
from liveresponse.client.config import ClientConfig
from liveresponse.testing.cluster import Cluster

MB = 1_000_000
RULE_SET = "bench.yar"
PLANTED = {  # offset (MiB) -> bytes planted there
    3: b"lr-bench-token-0003",
    17: b"\x4d\x5a\x90\x00lr\x00\x00\x00PE\x00\x00",
    41: b"beacon to http://qwertyuiop.onion/gate.php",
    66: "Wide Marker 12".encode("utf-16-le"),
    88: b"CONNECT evil4242.example.com:443",
    97: b"LR-BENCH-TOKEN-0009 mixed case",
}


def generate_rules(seed: int = 7) -> str:
    """50 rules of the kinds a tenant's set holds; a few match the planted strings, most match nothing."""
    rng = random.Random(seed)

    def hexword(count: int) -> str:
        return " ".join(f"{rng.randrange(256):02X}" for _ in range(count))

    rules = []
    for i in range(20):  # text strings
        modifier = " nocase" if i % 4 == 1 else (" wide ascii" if i % 4 == 2 else "")
        token = f"lr-bench-token-{i:04d}"
        strings = f'$a = "{token}"{modifier}'
        rules.append(f"rule Text{i:02d}\n{{\n    strings:\n        {strings}\n    condition:\n        $a\n}}")
    rules.append('rule WideMarker\n{\n    strings:\n        $w = "Wide Marker 12" wide\n    condition:\n        $w\n}')
    for i in range(11):  # hex strings with jumps
        rules.append(
            f"rule Hex{i:02d}\n{{\n    strings:\n        $h = {{ {hexword(4)} [2-8] {hexword(4)} }}\n"
            f"        $j = {{ {hexword(3)} ?? {hexword(2)} [4-16] {hexword(3)} }}\n    condition:\n        $h or $j\n}}"
        )
    pe = "{ 4D 5A 90 00 [2-6] 50 45 00 00 }"
    rules.append(f"rule PeInside\n{{\n    strings:\n        $mz = {pe}\n    condition:\n        $mz\n}}")
    regexes = [
        r"/https?:\/\/[a-z]{8,12}\.onion\/gate\.php/",
        r"/evil[0-9]{4}\.example\.com:[0-9]{2,5}/",
        r"/lr-bench-regex-[a-f0-9]{16}/",
        r"/User-Agent: LRBench\/[0-9]\.[0-9]/",
        r"/powershell(\.exe)? -enc [A-Za-z0-9+\/=]{20,}/ nocase",
        r"/\x00lrbenchpipe\\[a-z]{6}\x00/",
    ]
    for i, regex in enumerate(regexes):
        rules.append(f"rule Regex{i:02d}\n{{\n    strings:\n        $r = {regex}\n    condition:\n        $r\n}}")
    conditions = [
        "uint16(0) == 0x5A4D and filesize < 10MB",
        "uint16(0) == 0x457F and filesize > 1KB",
        "filesize > 50MB and $a",
        "filesize < 1KB and $a",
        "uint16(0) == 0x4B50 and $a",
        "filesize > 1MB and #a > 3",
    ]
    for i, condition in enumerate(conditions):
        uses_a = "$a" in condition or "#a" in condition
        strings = f'    strings:\n        $a = "lr-bench-cond-{i:02d}"\n' if uses_a else ""
        rules.append(f"rule Cond{i:02d}\n{{\n{strings}    condition:\n        {condition}\n}}")
    for i in range(5):  # several strings, counted
        rules.append(
            f'rule Multi{i:02d}\n{{\n    strings:\n        $a = "lr-multi-{i}-alpha"\n'
            f'        $b = "lr-multi-{i}-beta"\n        $c = {{ {hexword(6)} }}\n    condition:\n        2 of them\n}}'
        )
    assert len(rules) == 50, len(rules)
    return "\n\n".join(rules) + "\n"


def make_file(path: Path, mib: int) -> None:
    rng = random.Random(11)
    with open(path, "wb") as fh:
        for index in range(mib):
            block = bytearray(rng.randbytes(1 << 20))
            planted = PLANTED.get(index)
            if planted is not None:
                block[4096 : 4096 + len(planted)] = planted
            fh.write(block)


class YaraCommand:
    """Debian's yara on the same rules and file (``path`` is None when it is not installed)."""

    def __init__(self, rules: Path, sample: Path) -> None:
        self.path = shutil.which("yara")
        self.argv = [self.path or "yara", "-s", str(rules), str(sample)]
        self.version = "" if self.path is None else run_text([self.path, "--version"]).strip()

    def once(self) -> tuple[float, set[str]]:
        start = time.perf_counter()
        out = run_text(self.argv)
        elapsed = time.perf_counter() - start
        return elapsed, {line.split()[0] for line in out.splitlines() if line and not line.startswith("0x")}


def run_text(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


class EngineAlone:
    """The handler's engines in this process: open, sha256, the YARA scan, heuristics."""

    def __init__(self, sample: Path, source: str) -> None:
        self.sample = str(sample).encode()
        document = {"iocs": [], "rules": [{"name": RULE_SET, "source": source, "sha256": ""}]}
        self.intel = parse_bundle("0" * 64, document)
        self.limits = Limits(10 * 1024**3, "fileinfo_hash_max_bytes", time.monotonic() + 3600)

    def once(self) -> tuple[float, set[str]]:
        start = time.perf_counter()
        opened = open_file(self.sample)
        try:
            found = examine(opened, self.intel, self.limits, lambda: None)
        finally:
            opened.close()
        elapsed = time.perf_counter() - start
        return elapsed, {f["rule"].split(":", 1)[1] for f in found["findings"] if f["engine"] == "yara"}

    def parts(self) -> tuple[float, float]:
        """sha256 alone and the YARA scan alone, one after the other: where the time goes."""
        opened = open_file(self.sample)
        try:
            start = time.perf_counter()
            sha256_of(opened.fd, lambda: None)
            hashed = time.perf_counter()
            scan(self.intel.rules, opened.fd, externals_for(opened.location, None), 3600)
            return hashed - start, time.perf_counter() - hashed
        finally:
            opened.close()


class ThroughTheCluster:
    """One session on a real cluster; each run one console line until its done."""

    def __init__(self, cluster: Cluster, sample: Path) -> None:
        self.client = Client(ClientConfig(cluster.url, cluster.tokens["alice"], cluster.ca))
        self.cluster = cluster
        self.line = f'analyze file "{sample}" -output json'
        self.sources: list[str] = []
        self.agent_s: list[float] = []

    async def run(self, rounds: list[Any]) -> None:
        session = await self.client.open_session(self.cluster.device_id)
        try:
            async with self.client.console_channel(session["id"]) as channel:
                for each_round in rounds:
                    await each_round(channel)
        finally:
            await self.client.end_session(session["id"])
            await self.client.aclose()

    async def once(self, channel: Any) -> tuple[float, set[str]]:
        start = time.perf_counter()
        await channel.send_line(self.line)
        while True:
            event = await channel.next_event()
            if event["type"] in ("done", "error"):
                break
        elapsed = time.perf_counter() - start
        if event["type"] != "done" or event["status"] != "completed":
            raise SystemExit(f"analyze failed: {event}")
        result = event["result"]
        self.sources.append(result["intel"]["from"])
        self.agent_s.append(result["duration_s"])
        return elapsed, {f["rule"].split(":", 1)[1] for f in result["findings"] if f["engine"] == "yara"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="lr-bench-analyze-"))
    try:
        sample = work / "sample.bin"
        make_file(sample, args.mib)
        rules_file = work / RULE_SET
        source = generate_rules()
        rules_file.write_text(source)
        print(f"file: {args.mib} MiB random with {len(PLANTED)} planted strings; {source.count('rule ')} YARA rules")
        yara_cli = YaraCommand(rules_file, sample)
        engine = EngineAlone(sample, source)
        times: dict[str, list[float]] = {"ours": [], "engine": [], "yara": []}
        found: dict[str, set[str]] = {}
        parts: list[tuple[float, float]] = []
        cluster = Cluster(work / "cluster").start()
        try:
            cluster.admin("rules", "add", str(rules_file))
            ours = ThroughTheCluster(cluster, sample)

            async def warm_up(channel: Any) -> None:
                elapsed, found["ours"] = await ours.once(channel)
                print(f"warm-up: {elapsed * 1000:.0f} ms (the bundle from the {ours.sources[-1]}, compiled)")

            async def one_round(channel: Any) -> None:
                # Interleaved, so a busy moment of the machine hits all three alike.
                elapsed, found["ours"] = await ours.once(channel)
                times["ours"].append(elapsed)
                elapsed, found["engine"] = engine.once()
                times["engine"].append(elapsed)
                parts.append(engine.parts())
                if yara_cli.path is not None:
                    elapsed, found["yara"] = yara_cli.once()
                    times["yara"].append(elapsed)

            asyncio.run(ours.run([warm_up, *[one_round] * args.runs]))
        finally:
            cluster.stop()
        if ours.sources[1:] != ["memory"] * args.runs:
            raise SystemExit(f"the bundle was not cached after the warm-up: {ours.sources}")
        if len({frozenset(rules) for rules in found.values()}) != 1:
            raise SystemExit(f"the engines disagree on what matched: {found}")
        print(f"rules matched (all agree): {', '.join(sorted(found['ours']))}")

        def line(label: str, seconds: float) -> float:
            rate = size / seconds / MB
            print(f"{label:46} {seconds * 1000:7.0f} ms  {rate:6.0f} MB/s")
            return rate

        print(f"median of {args.runs} interleaved runs:")
        ours_rate = line("liveresponse analyze (console->server->agent)", statistics.median(times["ours"]))
        print(f"{'  of which on the agent (its duration_s)':46} {statistics.median(ours.agent_s[1:]) * 1000:7.0f} ms")
        engine_rate = line("agent engines alone (sha256, yara, heuristics)", statistics.median(times["engine"]))
        print(f"{'  sha256 alone':46} {statistics.median(p[0] for p in parts) * 1000:7.0f} ms")
        print(f"{'  YARA scan alone (yara-python ' + yara_version() + ')':46} "
              f"{statistics.median(p[1] for p in parts) * 1000:7.0f} ms")  # fmt: skip
        if yara_cli.path is None:
            print("anchor: yara not installed (apt-get install yara)")
            return 0
        yara_rate = line(f"yara -s rules.yar FILE (Debian yara {yara_cli.version})", statistics.median(times["yara"]))
        print(f"ratio analyze/yara: {ours_rate / yara_rate:.2f}   engines alone/yara: {engine_rate / yara_rate:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def yara_version() -> str:
    import yara

    return str(yara.YARA_VERSION)


if __name__ == "__main__":
    sys.exit(main())

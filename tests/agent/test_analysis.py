"""analyze on the device (SPEC §5): the three engines, the verdict, the intel cache, cancel. Real files, real YARA."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liveresponse.agent.analysis import intel as intel_cache
from liveresponse.agent.analysis.heuristics import EICAR
from liveresponse.agent.commands.analyze import run as analyze
from liveresponse.agent.commands.context import Cancelled, CommandContext
from liveresponse.protocol.errors import CommandFailed, NotFound

MARKER_RULES = """
rule Marker
{
    strings:
        $a = "LR-ANALYZE-MARKER"
        $b = { 4C 52 [2-4] 21 21 }
    condition:
        $a or $b
}

rule Quiet
{
    meta:
        verdict = "suspicious"
    strings:
        $q = "quietly odd"
    condition:
        $q
}
"""


@dataclass(frozen=True)
class FetchedCopy:
    path: Path
    sha256: str
    size: int


class FakeFiles:
    """The working folder's fetch, served from bytes in memory: what the server would send."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fetches = 0

    def fetch(self, library: dict[str, Any], into: Path, check_cancelled: Callable[[], None]) -> FetchedCopy:
        check_cancelled()
        self.fetches += 1
        data = self.blobs[library["sha256"]]
        fd, name = tempfile.mkstemp(dir=into, prefix=".fetch-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return FetchedCopy(Path(name), library["sha256"], len(data))


def bundle(iocs: list[dict[str, str]] | None = None, rules: dict[str, str] | None = None) -> bytes:
    document = {
        "iocs": iocs or [],
        "rules": [
            {"name": name, "source": source, "sha256": hashlib.sha256(source.encode()).hexdigest()}
            for name, source in (rules or {}).items()
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class Device:
    """One agent's state directory and working folder; ``ctx`` makes a command context with a bundle."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.files = FakeFiles()

    def ctx(self, data: bytes, cwd: str = "/", **kw: Any) -> CommandContext:
        sha256 = hashlib.sha256(data).hexdigest()
        self.files.blobs[sha256] = data
        library = {"name": "intel", "sha256": sha256, "size": len(data), "path": f"/agent/v1/blobs/{sha256}"}
        library["ticket"] = "t"
        return CommandContext(cwd=cwd, library=library, files=self.files, state_dir=self.state_dir, **kw)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path / "state")


@pytest.fixture
def in_tmp() -> Iterator[Path]:
    """A folder right under /tmp (world-writable, sticky), whatever TMPDIR says."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="lr-analysis-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unique_bundle(**kw: Any) -> bytes:
    """A bundle no other test has loaded (the compiled cache is per bundle sha256)."""
    iocs = [*kw.pop("iocs", []), {"sha256": uuid.uuid4().hex * 2, "verdict": "clean", "title": "filler"}]
    return bundle(iocs=iocs, **kw)


def test_eicar_is_malicious(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "eicar.com"
    sample.write_bytes(EICAR + b"\r\n")
    result = analyze(device.ctx(bundle()), {"type": "file", "target": str(sample)})
    assert result["verdict"] == "malicious"
    assert result["findings"] == [
        {"engine": "heuristics", "result": "malicious", "reason": "the EICAR anti-malware test file", "rule": "eicar"}
    ]
    assert result["type"] == "file" and result["target"] == str(sample) and result["path"] == str(sample)
    assert result["size"] == 70 and result["sha256"] == hashlib.sha256(EICAR + b"\r\n").hexdigest()
    assert result["engines"] == {
        "hash": "0 indicators",
        "yara": "0 rule sets, 0 rules",
        "heuristics": "eicar, setuid, world-writable, hidden",
    }


def test_eicar_string_inside_a_bigger_file_is_not_the_test_file(device: Device, tmp_path: Path) -> None:
    longer = tmp_path / "longer.txt"
    longer.write_bytes(EICAR + b" and then some more text")
    padded = tmp_path / "padded.txt"
    padded.write_bytes(b"x" + EICAR)
    for sample in (longer, padded):
        assert analyze(device.ctx(bundle()), {"type": "file", "target": str(sample)})["findings"] == []


def test_plain_text_is_clean_with_no_findings(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "notes.txt"
    sample.write_text("meeting notes, nothing to see\n")
    ctx = device.ctx(bundle(rules={"marker.yar": MARKER_RULES}), cwd=str(tmp_path))
    result = analyze(ctx, {"type": "file", "target": "notes.txt"})
    assert result["verdict"] == "clean" and result["findings"] == []
    assert result["target"] == "notes.txt" and result["path"] == str(sample)
    assert result["engines"]["yara"] == "1 rule set, 2 rules"


def test_a_yara_rule_match_names_the_rule_and_the_string_offsets(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "dropper.bin"
    sample.write_bytes(b"\x00" * 100 + b"LR-ANALYZE-MARKER" + b"\x00" * 50 + b"LR-ANALYZE-MARKER" + b"quietly odd")
    ctx = device.ctx(bundle(rules={"marker.yar": MARKER_RULES, "other.yar": "rule Never { condition: false }"}))
    result = analyze(ctx, {"type": "file", "target": str(sample)})
    assert result["verdict"] == "malicious"
    assert result["findings"] == [
        {
            "engine": "yara",
            "result": "malicious",
            "reason": "YARA rule Marker matched (strings $a at offset 100 and 1 more)",
            "rule": "marker.yar:Marker",
        },
        {
            "engine": "yara",
            "result": "suspicious",  # the rule's meta verdict
            "reason": "YARA rule Quiet matched (strings $q at offset 184)",
            "rule": "marker.yar:Quiet",
        },
    ]
    assert result["engines"]["yara"] == "2 rule sets, 3 rules"


def test_hex_strings_with_jumps_match(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "hex.bin"
    sample.write_bytes(b"....LR\x01\x02\x03!!....")
    result = analyze(device.ctx(bundle(rules={"marker.yar": MARKER_RULES})), {"type": "file", "target": str(sample)})
    assert [f["reason"] for f in result["findings"]] == ["YARA rule Marker matched (strings $b at offset 4)"]


def test_an_indicator_match_gives_its_verdict_and_title(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "tool.bin"
    sample.write_bytes(b"some tool the tenant knows\n")
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    iocs = [
        {"sha256": digest, "verdict": "suspicious", "title": "dual-use tool"},
        {"sha256": "0" * 64, "verdict": "malicious", "title": "other"},
    ]
    result = analyze(device.ctx(bundle(iocs=iocs)), {"type": "file", "target": str(sample)})
    assert result["verdict"] == "suspicious"
    assert result["findings"] == [
        {
            "engine": "hash",
            "result": "suspicious",
            "reason": f"sha256 {digest} is on the tenant indicator list: dual-use tool",
            "rule": digest,
        }
    ]
    assert result["engines"]["hash"] == "2 indicators"


def test_setuid_script_in_tmp_is_suspicious(device: Device, in_tmp: Path) -> None:
    sample = in_tmp / "helper"
    sample.write_text("#!/bin/sh\nexec /bin/sh\n")
    sample.chmod(0o4755)
    assert stat.S_IMODE(sample.stat().st_mode) == 0o4755
    result = analyze(device.ctx(bundle()), {"type": "file", "target": str(sample)})
    assert result["verdict"] == "suspicious"
    assert result["findings"] == [
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"setuid executable {sample} outside the system directories (mode 4755, owner uid {os.getuid()})",
            "rule": "setuid",
        },
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"script executable {sample} is below the world-writable directory /tmp (mode 1777)",
            "rule": "world-writable",
        },
    ]


def test_executables_in_hidden_folders_are_suspicious_tool_folders_not(device: Device, tmp_path: Path) -> None:
    hidden = tmp_path / ".cache-x" / "updater"
    tool = tmp_path / ".local" / "bin" / "tool"
    for path in (hidden, tool):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 57)
        path.chmod(0o755)
    result = analyze(device.ctx(bundle()), {"type": "file", "target": str(hidden)})
    hidden_findings = [f for f in result["findings"] if f["rule"] == "hidden"]
    assert hidden_findings == [
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"ELF executable {hidden} is in a hidden location (.cache-x)",
            "rule": "hidden",
        }
    ]
    result = analyze(device.ctx(bundle()), {"type": "file", "target": str(tool)})
    assert [f for f in result["findings"] if f["rule"] == "hidden"] == []


def test_a_symbolic_link_is_followed_and_the_result_says_so(device: Device, tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("plain\n")
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    result = analyze(device.ctx(bundle()), {"type": "file", "target": str(link)})
    assert result["path"] == str(link) and result["real_path"] == str(target)
    assert result["notes"] == [f"{link} is a symbolic link to real.txt; its target was analyzed"]
    assert result["sha256"] == hashlib.sha256(b"plain\n").hexdigest()


def test_fifo_and_directory_are_not_analyzable_and_never_opened(device: Device, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading without a writer would block: it must not be opened
    with pytest.raises(CommandFailed) as raised:
        analyze(device.ctx(bundle()), {"type": "file", "target": str(fifo)})
    assert raised.value.message == f"{fifo} is a FIFO (named pipe), not a regular file: not analyzable " \
        "(only regular files are read)"  # fmt: skip
    with pytest.raises(CommandFailed, match="is a directory, not a regular file"):
        analyze(device.ctx(bundle()), {"type": "file", "target": str(tmp_path)})
    with pytest.raises(NotFound, match="no such file"):
        analyze(device.ctx(bundle()), {"type": "file", "target": str(tmp_path / "absent")})


def test_kernel_made_files_are_refused_not_read_forever(device: Device) -> None:
    # /proc/self/pagemap reports size 0 and reads for minutes; /sys files are made up as they are read
    for target, kind in (
        ("/proc/self/pagemap", "proc"),
        ("/proc/self/environ", "proc"),
        ("/sys/kernel/notes", "sysfs"),
    ):
        with pytest.raises(CommandFailed) as raised:
            analyze(device.ctx(bundle()), {"type": "file", "target": target})
        assert raised.value.message.startswith(f"{target} is on a {kind} pseudo file system: ")


def test_over_the_hashing_limit_neither_hash_nor_yara_runs(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "big.bin"
    sample.write_bytes(b"LR-ANALYZE-MARKER" * 100)
    ctx = device.ctx(bundle(rules={"marker.yar": MARKER_RULES}), fileinfo_hash_max_bytes=1000)
    result = analyze(ctx, {"type": "file", "target": str(sample)})
    skipped = "skipped: 1700 bytes is over fileinfo_hash_max_bytes=1000"
    assert result["engines"]["hash"] == skipped and result["engines"]["yara"] == skipped
    assert result["sha256"] is None and result["verdict"] == "clean"


class CancelAfter(CommandContext):
    """A context whose analyst presses Ctrl+C after ``calls`` cancellation checks."""

    calls = 0
    cancel_at = 3

    def check_cancelled(self) -> None:
        self.calls += 1
        if self.calls >= self.cancel_at:
            self.cancel_event.set()
        super().check_cancelled()


def test_cancel_stops_the_analysis_while_hashing(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "large.bin"
    with open(sample, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 chunks to hash
    base = device.ctx(bundle())
    ctx = CancelAfter(library=base.library, files=base.files, state_dir=base.state_dir)
    ctx.cancel_at = 5  # after the bundle is loaded, inside the hashing loop
    with pytest.raises(Cancelled):
        analyze(ctx, {"type": "file", "target": str(sample)})
    assert 5 <= ctx.calls < 64


def test_cancel_before_anything_is_read(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "a.txt"
    sample.write_text("a\n")
    ctx = device.ctx(bundle())
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        analyze(ctx, {"type": "file", "target": str(sample)})


def test_the_bundle_is_fetched_once_then_cached_by_sha256(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "a.txt"
    sample.write_text("a\n")
    data = unique_bundle(rules={"marker.yar": MARKER_RULES})
    sha256 = hashlib.sha256(data).hexdigest()
    first = analyze(device.ctx(data), {"type": "file", "target": str(sample)})
    assert first["intel"] == {"sha256": sha256, "from": "server"} and device.files.fetches == 1
    folder = device.state_dir / "intel"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / f"{sha256}.json").read_bytes() == data
    second = analyze(device.ctx(data), {"type": "file", "target": str(sample)})
    assert second["intel"] == {"sha256": sha256, "from": "memory"} and device.files.fetches == 1

    intel_cache._loaded.clear()  # as after an agent restart
    third = analyze(device.ctx(data), {"type": "file", "target": str(sample)})
    assert third["intel"] == {"sha256": sha256, "from": "disk"} and device.files.fetches == 1

    intel_cache._loaded.clear()
    (folder / f"{sha256}.json").write_bytes(data.replace(b"filler", b"fi11er"))  # damaged on disk
    fourth = analyze(device.ctx(data), {"type": "file", "target": str(sample)})
    assert fourth["intel"] == {"sha256": sha256, "from": "server"} and device.files.fetches == 2
    assert (folder / f"{sha256}.json").read_bytes() == data


def test_old_bundles_are_pruned(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "a.txt"
    sample.write_text("a\n")
    shas = []
    for _ in range(5):
        data = unique_bundle()
        shas.append(hashlib.sha256(data).hexdigest())
        analyze(device.ctx(data), {"type": "file", "target": str(sample)})
        time.sleep(0.01)  # distinct modification times
    kept = sorted(p.stem for p in (device.state_dir / "intel").glob("*.json"))
    assert kept == sorted(shas[-intel_cache.KEPT_ON_DISK :])


def test_a_rule_set_this_device_cannot_compile_is_named_and_the_others_run(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "m.bin"
    sample.write_bytes(b"LR-ANALYZE-MARKER")
    rules = {"broken.yar": "rule Broken { condition: nonsense }", "marker.yar": MARKER_RULES}
    result = analyze(device.ctx(bundle(rules=rules)), {"type": "file", "target": str(sample)})
    assert [f["rule"] for f in result["findings"]] == ["marker.yar:Marker"]
    assert result["engines"]["yara"] == (
        "1 rule set, 2 rules; rule set broken.yar does not compile on this device: "
        'line 1: undefined identifier "nonsense"'
    )


def test_a_malformed_bundle_is_refused(device: Device, tmp_path: Path) -> None:
    sample = tmp_path / "a.txt"
    sample.write_text("a\n")
    data = json.dumps({"iocs": [{"sha256": "xyz", "verdict": "malicious", "title": "t"}], "rules": []}).encode()
    with pytest.raises(CommandFailed, match="malformed"):
        analyze(device.ctx(data), {"type": "file", "target": str(sample)})
    no_bundle = CommandContext(state_dir=device.state_dir)
    with pytest.raises(CommandFailed, match="came without the tenant's intel bundle"):
        analyze(no_bundle, {"type": "file", "target": str(sample)})


def wait_for_exec(pid: int, image: Path) -> None:
    """Until exec has replaced the forked Python and set up the new command line."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if os.readlink(f"/proc/{pid}/exe") == str(image) and Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        time.sleep(0.01)
    raise AssertionError(f"{image} did not start")


def test_a_process_running_from_a_deleted_file_in_tmp_is_suspicious(device: Device, in_tmp: Path) -> None:
    image = in_tmp / "sleeper"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", image)
    proc = subprocess.Popen([str(image), "300"])
    try:
        wait_for_exec(proc.pid, image)
        image.unlink()
        digest = hashlib.sha256(Path(f"/proc/{proc.pid}/exe").read_bytes()).hexdigest()
        result = analyze(device.ctx(bundle()), {"type": "process", "target": str(proc.pid)})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert result["verdict"] == "suspicious"
    assert result["findings"] == [
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"runs from a deleted file {image} (deleted)",
            "rule": "deleted-image",
        },
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"runs from {image}, below the world-writable directory /tmp (mode 1777)",
            "rule": "world-writable",
        },
    ]
    assert result["type"] == "process" and result["target"] == str(proc.pid) and result["pid"] == proc.pid
    assert result["path"] == str(image) and result["exe_deleted"] is True
    assert result["cmdline"] == [str(image), "300"] and result["sha256"] == digest
    assert result["engines"]["heuristics"] == "deleted-image, memfd-image, world-writable, hidden, eicar, setuid"


def test_process_errors(device: Device) -> None:
    with pytest.raises(NotFound, match="no process with pid 999999999"):
        analyze(device.ctx(bundle()), {"type": "process", "target": "999999999"})
    with pytest.raises(CommandFailed, match="a positive number, not 'abc'"):
        analyze(device.ctx(bundle()), {"type": "process", "target": "abc"})


def test_a_live_process_image_is_read_through_proc(device: Device) -> None:
    result = analyze(device.ctx(bundle()), {"type": "process", "target": str(os.getpid())})
    assert result["pid"] == os.getpid() and result["exe_deleted"] is False
    assert result["path"] == os.path.realpath(f"/proc/{os.getpid()}/exe")


def test_results_carry_every_catalogue_field(device: Device, tmp_path: Path) -> None:
    from liveresponse.protocol.catalogue import lookup

    spec = lookup("analyze")
    assert spec is not None
    sample = tmp_path / "a.txt"
    sample.write_text("a\n")
    for args in ({"type": "file", "target": str(sample)}, {"type": "process", "target": str(os.getpid())}):
        result = analyze(device.ctx(bundle()), args)
        assert set(spec.fields) <= set(result), args

"""The device policy file (agent/policy.py): parsing, fail-closed, reload on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liveresponse.agent.policy import PolicyError, PolicyFile, PolicyRefused, parse_policy


def test_classes_and_command_names_expand_to_commands() -> None:
    policy = parse_policy('forbid = ["remediation", "findfile"]\ngetfile_max_bytes = 1000\n', "p.toml")
    assert policy.forbidden == {"remediate": "remediation", "undo": "remediation", "findfile": "findfile"}
    assert policy.getfile_max_bytes == 1000


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('forbid = ["remediation"', "not valid TOML"),
        ('forbid = "remediation"', "forbid must be a list of strings"),
        ('forbid = ["reboot"]', "cannot forbid 'reboot'"),
        ("getfile_max_bytes = -1", "getfile_max_bytes must be a whole number of bytes"),
        ("getfile_max_bytes = true", "getfile_max_bytes must be a whole number of bytes"),
        ("forbid_all = true", "unknown key(s) forbid_all"),
        ('forbid = ["cls"]', "cannot forbid 'cls'"),  # a console command never reaches the device
    ],
)
def test_bad_policies_name_the_file_and_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "/etc/x/policy.toml")
    assert fragment in caught.value.message and "/etc/x/policy.toml" in caught.value.message


def test_refusal_names_the_policy_and_the_class(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('forbid = ["remediation", "run"]\n')
    policy = PolicyFile(path)
    with pytest.raises(PolicyRefused) as caught:
        policy.check("undo", {"type": "file", "id": "/tmp/x"})
    assert caught.value.message == (
        f"refused by this device's policy ({path}): remediation (remediate, undo) is forbidden on this device"
    )
    assert caught.value.code == "device_policy"
    with pytest.raises(PolicyRefused, match="run is forbidden"):
        policy.check("run", {"script": "x.sh"})
    policy.check("remediate", {"type": "list"})  # reading the device's records is not a remediation
    policy.check("dir", {})


def test_reloads_when_the_file_changes_and_fails_closed_when_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('forbid = ["run"]\n')
    policy = PolicyFile(path)
    with pytest.raises(PolicyRefused):
        policy.check("run", {})
    path.write_text('forbid = ["putfile"]\n')
    os.utime(path, ns=(1, 10**18))  # a different mtime even within the file system's time granularity
    policy.check("run", {})
    with pytest.raises(PolicyRefused):
        policy.check("putfile", {})
    path.write_text("forbid = [\n")
    os.utime(path, ns=(1, 2 * 10**18))
    with pytest.raises(PolicyError, match="not valid TOML"):
        policy.check("dir", {})  # every command refused until the file is fixed
    path.unlink()
    with pytest.raises(PolicyError, match="is missing"):
        policy.check("dir", {})  # named explicitly: its absence is not "no policy"


def test_the_default_path_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("liveresponse.agent.policy.DEFAULT_POLICY_FILE", tmp_path / "absent.toml")
    policy = PolicyFile()
    assert policy.check("remediate", {"type": "file"}).forbidden == {}

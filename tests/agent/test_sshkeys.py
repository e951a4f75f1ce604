"""authorized_keys parsing: options, key types and fingerprints equal to ssh-keygen -lf."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from liveresponse.agent.platform.linux.sshkeys import parse_authorized_key
from tests.agent.planting import (
    crafted_sk_ed25519,
    generate_public_key,
    keygen_fingerprints,
    needs_ssh_keygen,
    ssh_string,
)


@pytest.fixture(scope="module")
def four_key_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp_path = tmp_path_factory.mktemp("keys")
    ed25519 = generate_public_key(tmp_path, "ed25519")
    rsa = generate_public_key(tmp_path, "rsa", 3072)
    ecdsa = generate_public_key(tmp_path, "ecdsa", 384)
    return [
        f'command="/usr/local/bin/backup --dest \\"/srv/a b\\",--fast",from="10.0.0.0/8,192.168.1.*",no-pty {ed25519} '
        "alice@laptop",
        f"{rsa} rsa key with spaces in comment",
        f'no-agent-forwarding,environment="LANG=C" {ecdsa} ecdsa@host',
        f"no-touch-required {crafted_sk_ed25519()} yubikey",
    ]


@needs_ssh_keygen
def test_fingerprints_equal_ssh_keygen(tmp_path: Path, four_key_lines: list[str]) -> None:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("# a comment\n\n" + "\n".join(four_key_lines) + "\n")
    expected = keygen_fingerprints(authorized)
    parsed = [parse_authorized_key(line) for line in four_key_lines]
    assert [(key.bits, key.fingerprint) for key in parsed if key] == expected
    assert [key.key_type for key in parsed if key] == [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp384",
        "sk-ssh-ed25519@openssh.com",
    ]
    assert all(key is not None and key.problem is None for key in parsed)


@needs_ssh_keygen
def test_quoted_options_keep_spaces_and_commas(four_key_lines: list[str]) -> None:
    key = parse_authorized_key(four_key_lines[0])
    assert key is not None
    assert key.options == (
        'command="/usr/local/bin/backup --dest \\"/srv/a b\\",--fast"',
        'from="10.0.0.0/8,192.168.1.*"',
        "no-pty",
    )
    assert key.option("command") == '/usr/local/bin/backup --dest "/srv/a b",--fast'
    assert key.option("from") == "10.0.0.0/8,192.168.1.*"
    assert key.option("no-pty") is None
    assert key.comment == "alice@laptop"
    rsa = parse_authorized_key(four_key_lines[1])
    assert rsa is not None and rsa.options == () and rsa.comment == "rsa key with spaces in comment"


def test_every_listed_key_type_is_recognised() -> None:
    for key_type in ("ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com"):
        blob = ssh_string(key_type.encode()) + ssh_string(b"\x01" * 8)
        key = parse_authorized_key(f"{key_type} {base64.b64encode(blob).decode()} c")
        assert (
            key is not None and key.key_type == key_type and key.fingerprint and key.fingerprint.startswith("SHA256:")
        )


def test_blank_and_comment_lines_are_not_keys() -> None:
    assert parse_authorized_key("") is None
    assert parse_authorized_key("   # ssh-rsa AAAA") is None


def test_malformed_lines_are_reported_not_dropped() -> None:
    assert parse_authorized_key("not-a-key AAAA").problem == "no known key type"  # type: ignore[union-attr]
    assert parse_authorized_key("ssh-ed25519 !!!notbase64").problem == "key data is not base64"  # type: ignore[union-attr]
    mismatched = base64.b64encode(
        ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") + ssh_string(b"\x00\xff")
    ).decode()
    key = parse_authorized_key(f"ssh-ed25519 {mismatched}")
    assert key is not None and key.problem == "key data is of type ssh-rsa, the line says ssh-ed25519"

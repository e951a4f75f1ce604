"""Script signing end to end (SPEC §5 run, §11): signed runs, tampered and unsigned are refused, saying why."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
from pathlib import Path

from liveresponse.protocol.library import sign_digest
from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import lr, setting, upload


def test_signed_scripts_run_tampered_and_unsigned_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    key = tmp_path / "publisher.key"
    assert lr(cluster, "library", "keygen", str(key)).returncode == 0
    assert cluster.admin("publisher", "add", "soc-team", str(key) + ".pub").returncode == 0
    script = tmp_path / "run-signed.sh"
    script.write_text("echo signed-ok\n")
    upload(cluster, script, "--overwrite")

    unsigned = cluster.console("run run-signed.sh")
    assert unsigned.returncode == 1
    assert "not signed" in unsigned.stderr and "unsigned_scripts_allowed" in unsigned.stderr
    assert "checked on the server" in unsigned.stderr

    other = tmp_path / "other.key"
    lr(cluster, "library", "keygen", str(other))
    untrusted = lr(cluster, "library", "sign", str(script), "--key", str(other))
    assert untrusted.returncode == 1 and "no trusted publisher" in untrusted.stderr
    signed = lr(cluster, "library", "sign", str(script), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    ok = cluster.console("run run-signed.sh")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "signed-ok\n"

    # Someone with the store but not the key swaps the script: the device checks the signature itself.
    evil = b"echo evil\n"
    evil_sha = hashlib.sha256(evil).hexdigest()
    blob = cluster.data / "blobs" / evil_sha[:2] / evil_sha
    blob.parent.mkdir(exist_ok=True)
    blob.write_bytes(evil)
    db = sqlite3.connect(cluster.data / "liveresponse.db")
    try:
        db.execute("UPDATE library_files SET sha256 = ?, size = ? WHERE name = 'run-signed.sh'", (evil_sha, len(evil)))
        db.commit()
    finally:
        db.close()
    tampered = cluster.console("run run-signed.sh")
    assert tampered.returncode == 1
    assert "does not verify" in tampered.stderr and "checked on the device" in tampered.stderr
    assert "evil" not in tampered.stdout

    # A file whose blob changed on disk is refused by its sha256 on the device, before anything runs.
    lab = tmp_path / "run-lab.sh"
    lab.write_text("echo lab\n")
    row = upload(cluster, lab, "--overwrite")
    sha = str(row["sha256"])
    stored = cluster.data / "blobs" / sha[:2] / sha
    os.chmod(stored, 0o600)
    stored.write_bytes(b"echo bad\n")  # same size, other bytes
    try:
        with setting(cluster, "unsigned_scripts_allowed", "true", "false"):
            changed = cluster.console("run run-lab.sh")
    finally:
        stored.write_bytes(b"echo lab\n")
    assert changed.returncode == 1 and "expected 9 bytes with sha256" in changed.stderr


def test_signature_statement_is_the_documented_one() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    signature = base64.b64decode(sign_digest(key, "ab" * 32))
    key.public_key().verify(signature, b"liveresponse-script-signature-v1\nsha256:" + b"ab" * 32 + b"\n")

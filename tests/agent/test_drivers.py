"""drivers: /proc/modules or /sys/module, enriched from a planted /lib/modules tree."""

from __future__ import annotations

import datetime
import lzma
import os
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from liveresponse.agent.commands import drivers
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.modfile import SIGNATURE_MAGIC
from liveresponse.agent.platform.linux.modules import list_drivers
from liveresponse.protocol.errors import CommandFailed

RELEASE = "6.1.0-test"


def elf_with_modinfo(modinfo: dict[str, str]) -> bytes:
    """A minimal relocatable ELF64 with a .modinfo section, as a .ko carries it."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    names = b"\0.modinfo\0.shstrtab\0"
    info_offset = 64
    names_offset = info_offset + len(info)
    section_offset = (names_offset + len(names) + 7) // 8 * 8
    header = struct.pack("<4sBBBB8xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 1, 62, 1, 0, 0, section_offset, 0, 64, 0,
                         0, 64, 3, 2)  # fmt: skip
    sections = bytes(64)
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, info_offset, len(info), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, names_offset, len(names), 0, 0, 1, 0)
    body = header + info + names
    return body + bytes(section_offset - len(body)) + sections


def signed(image: bytes, signer: str) -> bytes:
    """Append a PKCS#7 module signature the way scripts/sign-file does."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"), x509.NameAttribute(NameOID.COMMON_NAME, signer)]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    signature = (
        pkcs7.PKCS7SignatureBuilder().set_data(image).add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoCerts])
    )  # fmt: skip
    return image + signature + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(signature)) + SIGNATURE_MAGIC


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/modules").write_text(
        "nf_tables 344064 2 nft_chain_nat,nft_compat, Live 0xffffffffc0a00000\n"
        "vboxdrv 696320 0 - Live 0x0000000000000000 (OE)\n"
        "ghost 16384 0 - Unloading 0x0000000000000000\n"
    )
    tree = tmp_path / "lib/modules" / RELEASE
    (tree / "kernel/net/netfilter").mkdir(parents=True)
    (tree / "updates").mkdir()
    (tree / "modules.dep").write_text(
        "kernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko\nupdates/vboxdrv.ko.xz:\n"
    )
    signed_image = signed(elf_with_modinfo({"license": "GPL", "version": "1.2.3", "srcversion": "ABC"}), "Build key")
    (tree / "kernel/net/netfilter/nf_tables.ko").write_bytes(signed_image)
    (tree / "updates/vboxdrv.ko.xz").write_bytes(lzma.compress(elf_with_modinfo({"version": "7.0.1 r1"})))
    (tmp_path / "sys/module/vboxdrv").mkdir(parents=True)
    return tmp_path


def test_proc_modules_enriched_from_the_module_tree(planted: Path) -> None:
    rows = list(list_drivers(f"{planted}/proc", f"{planted}/sys/module", f"{planted}/lib/modules", RELEASE))
    tree = f"{planted}/lib/modules/{RELEASE}"
    assert [(r["name"], r["size"], r["used_by"], r["state"], r["path"], r["version"], r["signer"]) for r in rows] == [
        ("nf_tables", 344064, ["nft_chain_nat", "nft_compat"], "live", f"{tree}/kernel/net/netfilter/nf_tables.ko",
         "1.2.3", "Build key"),
        ("vboxdrv", 696320, [], "live", f"{tree}/updates/vboxdrv.ko.xz", "7.0.1 r1", None),
        ("ghost", 16384, [], "unloading", None, None, None),
    ]  # fmt: skip
    assert rows[1]["taint"] == "OE"
    assert rows[2]["details_reason"] == f"ghost is not in {tree}/modules.dep"


def test_sys_module_when_proc_modules_is_absent(planted: Path) -> None:
    (planted / "proc/modules").unlink()
    base = planted / "sys/module"
    (base / "loop").mkdir()
    (base / "loop/initstate").write_text("live\n")
    (base / "loop/coresize").write_text("32768\n")
    (base / "loop/refcnt").write_text("1\n")
    (base / "loop/holders").mkdir()
    (base / "loop/holders/dm_mod").mkdir()
    (base / "vboxdrv/version").write_text("7.0.1\n")
    rows = {r["name"]: r for r in list_drivers(f"{planted}/proc", str(base), f"{planted}/none", RELEASE)}
    assert (rows["loop"]["state"], rows["loop"]["size"], rows["loop"]["used_by"]) == ("live", 32768, ["dm_mod"])
    assert (rows["vboxdrv"]["state"], rows["vboxdrv"]["size"], rows["vboxdrv"]["version"]) == ("builtin", None, "7.0.1")
    assert rows["loop"]["details_reason"] == f"{planted}/none/{RELEASE} is absent: path, version and signer unknown"
    assert rows["loop"]["source"] == str(base)


def test_live_system() -> None:
    rows = list(drivers.run(CommandContext(), {}))
    if not os.path.exists("/proc/modules"):
        assert sorted(r["name"] for r in rows) == sorted(os.listdir("/sys/module"))
    for row in rows:
        assert set(row) >= {"name", "size", "used_by", "state", "path", "version", "signer"}


def test_offline_root_is_refused() -> None:
    with pytest.raises(CommandFailed, match="running kernel"):
        drivers.run(CommandContext(root="/mnt/image"), {})

"""Facts read from a kernel module file (``.ko``, ``.ko.xz``, ``.ko.gz``).

``version`` comes from the ELF ``.modinfo`` section (``key=value`` strings
separated by NUL). ``signer`` comes from the appended signature, as modinfo(8)
reports it: the file ends with ``~Module signature appended~\\n`` after a
12-byte ``struct module_signature`` whose last field is the length of the
PKCS#7 blob before it; the signer is the common name of the issuer in the
blob's SignerInfo. ``.ko.zst`` cannot be opened with the standard library, so
``modinfo`` is asked when it is installed, else the facts stay null.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess

SIGNATURE_MAGIC = b"~Module signature appended~\n"
_PKEY_ID_PKCS7 = 2
_COMMON_NAME_OID = bytes([0x55, 0x04, 0x03])  # 2.5.4.3
_MODINFO_TIMEOUT_S = 10


def read_module(path: str) -> bytes | None:
    try:
        if path.endswith(".xz"):
            with lzma.open(path) as handle:
                return handle.read()
        if path.endswith(".gz"):
            with gzip.open(path) as handle:
                return handle.read()
        if path.endswith(".ko"):
            with open(path, "rb") as handle:
                return handle.read()
    except (OSError, lzma.LZMAError, EOFError):
        return None
    return None


def modinfo_section(image: bytes) -> dict[str, str]:
    """key -> value of the ``.modinfo`` section (first value of repeated keys)."""
    if image[:4] != b"\x7fELF" or image[4] != 2:  # 64-bit ELF only: the kernels we meet
        return {}
    order = "<" if image[5] == 1 else ">"
    shoff = struct.unpack_from(order + "Q", image, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", image, 0x3A)
    if not shoff or shstrndx >= shnum:
        return {}

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name = struct.unpack_from(order + "I", image, base)[0]
        offset, size = struct.unpack_from(order + "QQ", image, base + 24)
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        end = image.find(b"\0", names_offset + name)
        if image[names_offset + name : end] == b".modinfo":
            values: dict[str, str] = {}
            for item in image[offset : offset + size].split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep:
                    values.setdefault(key.decode("ascii", "replace"), value.decode("utf-8", "replace"))
            return values
    return {}


def _der(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``offset``."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    while start < end:
        element = _der(data, start)
        found.append(element)
        start = element[2]
    return found


def _issuer_common_name(pkcs7: bytes) -> str | None:
    _, start, end = _der(pkcs7, 0)  # ContentInfo
    content = _children(pkcs7, start, end)[1]  # [0] EXPLICIT
    _, start, end = _der(pkcs7, content[1])  # SignedData
    signer_infos = _children(pkcs7, start, end)[-1]  # the last field: SET OF SignerInfo
    first_signer = _children(pkcs7, signer_infos[1], signer_infos[2])[0]
    signer_id = _children(pkcs7, first_signer[1], first_signer[2])[1]
    if signer_id[0] != 0x30:
        return None  # identified by subjectKeyIdentifier: no name to show
    issuer = _children(pkcs7, signer_id[1], signer_id[2])[0]
    for _, set_start, set_end in _children(pkcs7, issuer[1], issuer[2]):
        for _, pair_start, pair_end in _children(pkcs7, set_start, set_end):
            oid, value = _children(pkcs7, pair_start, pair_end)[:2]
            if pkcs7[oid[1] : oid[2]] == _COMMON_NAME_OID:
                return pkcs7[value[1] : value[2]].decode("utf-8", "replace")
    return None


def signer_of(image: bytes) -> str | None:
    if not image.endswith(SIGNATURE_MAGIC):
        return None
    info_end = len(image) - len(SIGNATURE_MAGIC)
    _algo, _hash, id_type, signer_len, key_id_len, sig_len = struct.unpack_from(">BBBBB3xI", image, info_end - 12)
    blob_end = info_end - 12
    if id_type != _PKEY_ID_PKCS7:
        # Old format: signer name, key id and signature precede the struct.
        start = blob_end - sig_len - key_id_len - signer_len
        return image[start : start + signer_len].decode("utf-8", "replace") or None
    try:
        return _issuer_common_name(image[blob_end - sig_len : blob_end])
    except (IndexError, ValueError):
        return None


def modinfo_fields(path: str) -> dict[str, str]:
    """Ask modinfo(8), for compressions the standard library cannot read."""
    if shutil.which("modinfo") is None:
        return {}
    values: dict[str, str] = {}
    for key in ("version", "signer"):
        try:
            done = subprocess.run(
                ["modinfo", "-F", key, path], capture_output=True, text=True, timeout=_MODINFO_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return values
        if done.returncode == 0 and done.stdout.strip():
            values[key] = done.stdout.strip().splitlines()[0]
    return values

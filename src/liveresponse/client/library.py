"""``lr library``: list, upload, delete, sign, keygen (SPEC §3, §5, §7; DR-13).

Uploads stream the file from disk with its Content-Length (never held whole in
memory). ``sign`` hashes the local file, signs its sha256 statement with an
Ed25519 key (PEM PKCS8 from ``lr library keygen``, or an OpenSSH ed25519 key)
and attaches the detached signature to the library file of that name; the
server accepts it only if one of the tenant's publishers has the key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liveresponse.client.api import Client
from liveresponse.protocol.errors import LiveResponseError
from liveresponse.protocol.library import check_name, parse_private_key, sign_digest

CHUNK_BYTES = 1024 * 1024
LIST_COLUMNS = ["name", "size", "sha256", "signed", "publisher", "has_parameters", "updated", "description"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


async def list_files(client: Client) -> list[dict[str, Any]]:
    return list(await client._call("GET", "/api/v1/library"))


async def upload(
    client: Client,
    path: Path,
    name: str | None = None,
    description: str = "",
    parameters_description: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    name = check_name(name or path.name)
    params: dict[str, str] = {"description": description, "overwrite": str(overwrite).lower()}
    if parameters_description:
        params["parameters_description"] = parameters_description
    headers = {"content-length": str(path.stat().st_size), "content-type": "application/octet-stream"}
    return dict(
        await client._call(
            "PUT", f"/api/v1/library/{quote(name, safe='')}", params=params, headers=headers, content=_chunks(path)
        )
    )


async def delete(client: Client, name: str) -> dict[str, Any]:
    return dict(await client._call("DELETE", f"/api/v1/library/{quote(check_name(name), safe='')}"))


async def sign(client: Client, path: Path, key_path: Path, name: str | None = None) -> dict[str, Any]:
    key = parse_private_key(key_path.read_bytes())
    sha256 = sha256_of(path)
    body = {"sha256": sha256, "signature": sign_digest(key, sha256)}
    name = check_name(name or path.name)
    return dict(await client._call("PUT", f"/api/v1/library/{quote(name, safe='')}/signature", json=body))


def keygen(key_path: Path) -> Path:
    """Write a new Ed25519 signing key (PEM PKCS8, 0600) and its public half beside it (KEY.pub, PEM)."""
    if key_path.exists():
        raise LiveResponseError(f"{key_path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_path = key_path.with_name(key_path.name + ".pub")
    pub_path.write_bytes(public)
    return pub_path


async def library_main(args: argparse.Namespace, print_rows: Any) -> int:
    from liveresponse.client.config import load_client_config

    client = Client(load_client_config())
    try:
        what = args.library_command
        if what == "list":
            print_rows(await list_files(client), LIST_COLUMNS, args.output)
        elif what == "upload":
            row = await upload(
                client, Path(args.file), args.name, args.description, args.parameters_description, args.overwrite
            )
            if args.output == "json":
                print(json.dumps(row, indent=2, ensure_ascii=False))
            else:
                verb = "replaced" if row.get("replaced") else "uploaded"
                print(f"{verb} {row['name']}: {row['size']} bytes, sha256 {row['sha256']}")
        elif what == "delete":
            row = await delete(client, args.name)
            print(f"deleted {row['name']} (sha256 {row['sha256']})")
        elif what == "sign":
            row = await sign(client, Path(args.file), Path(args.key), args.name)
            print(f"signed {row['name']} (sha256 {row['sha256']}) as publisher {row['publisher']}")
        return 0
    finally:
        await client.aclose()

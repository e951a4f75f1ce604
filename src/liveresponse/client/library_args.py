"""The arguments of ``lr library`` (kept apart from client/library.py so building the parser stays light)."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    library = sub.add_parser("library", help="the tenant library: list, upload, delete, sign, keygen")
    actions = library.add_subparsers(dest="library_command", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--output", choices=("json", "table"), default="table")
    up = actions.add_parser("upload")
    up.add_argument("file")
    up.add_argument("--name", help="library name (default: the file's name)")
    up.add_argument("--description", default="")
    up.add_argument("--parameters-description")
    up.add_argument("--overwrite", action="store_true")
    up.add_argument("--output", choices=("json", "table"), default="table")
    rm = actions.add_parser("delete")
    rm.add_argument("name")
    signing = actions.add_parser("sign", help="sign FILE (already uploaded under its name) with an Ed25519 key")
    signing.add_argument("file")
    signing.add_argument("--key", required=True, help="PEM PKCS8 (lr library keygen) or OpenSSH ed25519 key")
    signing.add_argument("--name", help="library name (default: the file's name)")
    gen = actions.add_parser("keygen", help="make a signing key KEY and its public key KEY.pub")
    gen.add_argument("key")

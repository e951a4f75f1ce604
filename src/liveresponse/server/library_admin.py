"""``lr admin publisher add NAME PUBKEY``: trust a script publisher's key for a tenant (SPEC §3, §5)."""

from __future__ import annotations

from pathlib import Path

from liveresponse.protocol.library import key_fingerprint, parse_public_key, public_key_text
from liveresponse.server.store.library import LibraryOps
from liveresponse.server.store.store import Store


async def add_publisher(store: Store, tenant_id: str, name: str, pubkey: str, actor: str) -> int:
    """PUBKEY is a file (PEM SubjectPublicKeyInfo, an OpenSSH ``ssh-ed25519`` line) or the key text itself."""
    source = Path(pubkey)
    text = source.read_bytes() if source.is_file() else pubkey.encode()
    key = public_key_text(parse_public_key(text))
    publisher = await LibraryOps(store).add_publisher(tenant_id, name, key, actor)
    print(f"publisher {publisher.name} added: Ed25519 key {key_fingerprint(key)}")
    return 0

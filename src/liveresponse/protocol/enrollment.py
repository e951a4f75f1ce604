"""The enrollment token's format: it carries the server URL and the CA fingerprint (SPEC §3, §11)."""

from __future__ import annotations

import base64
import json
import secrets

from liveresponse.protocol.errors import AuthError

ENROLL_TOKEN_PREFIX = "lre1."


def make_enroll_token(server_url: str, ca_sha256: str) -> tuple[str, str]:
    """Returns (token, secret); the server keeps only a hash of the secret."""
    secret = secrets.token_urlsafe(32)
    body = json.dumps({"url": server_url, "ca_sha256": ca_sha256, "secret": secret}, separators=(",", ":"))
    return ENROLL_TOKEN_PREFIX + base64.urlsafe_b64encode(body.encode()).decode().rstrip("="), secret


def read_enroll_token(token: str) -> dict[str, str]:
    token = token.strip()
    if not token.startswith(ENROLL_TOKEN_PREFIX):
        raise AuthError(f"this is not a liveresponse enrollment token (it should start with {ENROLL_TOKEN_PREFIX!r})")
    raw = token[len(ENROLL_TOKEN_PREFIX) :]
    try:
        body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("url", "ca_sha256", "secret")):
            raise ValueError("fields")
    except ValueError:
        raise AuthError("the enrollment token is damaged: copy it again whole") from None
    return {k: str(body[k]) for k in ("url", "ca_sha256", "secret")}

"""Enrollment: a one-time token for a device identity (SPEC §11)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from liveresponse.protocol.errors import AuthError, LiveResponseError
from liveresponse.server.api.deps import app_state
from liveresponse.server.credentials import token_hash

router = APIRouter()


class EnrollBody(BaseModel):
    secret: str = Field(min_length=10, max_length=200)
    public_key: str = Field(min_length=10, max_length=2000)  # PEM, Ed25519
    hostname: str = Field(min_length=1, max_length=255)
    os: str = Field(min_length=1, max_length=50)
    device_type: str = Field(pattern="^(workstation|server)$")
    agent_version: str = Field(min_length=1, max_length=40)


@router.get("/api/v1/enroll/ca", response_class=PlainTextResponse)
async def ca_certificate(request: Request) -> str:
    """The CA certificate; the agent checks it against the fingerprint in its token before trusting it."""
    return app_state(request).pki.ca_pem.read_text()


@router.post("/api/v1/enroll")
async def enroll(body: EnrollBody, request: Request) -> dict[str, Any]:
    state = app_state(request)
    try:
        key = serialization.load_pem_public_key(body.public_key.encode())
    except ValueError:
        raise LiveResponseError("public_key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise LiveResponseError("public_key must be an Ed25519 key")
    device = await state.store.enroll_device(
        token_hash(body.secret), body.hostname, body.os, body.device_type, body.public_key, body.agent_version
    )
    if device is None:
        raise AuthError("the enrollment token is unknown, used up or expired: ask for a new one")
    return {
        "device_id": device.id,
        "command_public_key": state.pki.command_public_key_pem(),
        "server_url": state.config.url,
    }

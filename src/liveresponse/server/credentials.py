"""Passwords (Argon2id) and secret tokens (shown once, stored as sha256) — SPEC §8.

API tokens and enrollment secrets are 32 random bytes: a sha256 of such a
secret cannot be reversed, so a slow hash adds nothing there. Passwords are
chosen by people and get Argon2id.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2-cffi's default type is Argon2id

API_TOKEN_PREFIX = "lrt_"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

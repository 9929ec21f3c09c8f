"""Bearer secrets (API tokens, console sessions, review links): made random, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str = "") -> tuple[str, str]:
    """256 random bits as URL-safe text, and the digest that is the only thing kept of it."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, sha256_hex(secret)

"""Bearer secrets (API tokens, console sessions, review links): made random, stored as SHA-256 only; and
the codes that confirm a sign-off, derived from a stored salt under the secret key."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str = "") -> tuple[str, str]:
    """256 random bits as URL-safe text, and the digest that is the only thing kept of it."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, sha256_hex(secret)


SIGN_OFF_CODE_DIGITS = 6


def sign_off_code(secret_key: str, salt: str) -> str:
    """The 6-digit code a sign-off code's salt stands for under the service's secret key: worked out when
    its email is written and when it is entered, never stored (a copy of the database alone gives none)."""
    mac = hmac.new(secret_key.encode("utf-8"), b"sign-off-code:" + salt.encode("ascii"), hashlib.sha256)
    number = int.from_bytes(mac.digest()[:8], "big") % 10**SIGN_OFF_CODE_DIGITS
    return f"{number:0{SIGN_OFF_CODE_DIGITS}d}"

"""Personal review links: tokens derived from a stored nonce, looked up by their hash.

token = base64url(HMAC-SHA256(secret_key, "review-link:" + nonce)), 256 bits. The database keeps the
random nonce (256 bits) and SHA-256(token); without the secret key neither opens a page. Because the
token can be derived again, an invitation that must be re-sent carries the same link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

from models.enums import ContactRole
from models.reviews import AccessLink


def derive_token(secret_key: str, nonce: str) -> str:
    digest = hmac.new(secret_key.encode("utf-8"), f"review-link:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_link(
    *, secret_key: str, task_id: int, round_id: int, role: ContactRole, email: str, name: str
) -> AccessLink:
    nonce = secrets.token_urlsafe(32)
    return AccessLink(
        id=uuid.uuid4().hex,
        task_id=task_id,
        round_id=round_id,
        role=role,
        email=email,
        name=name,
        nonce=nonce,
        token_sha256=token_sha256(derive_token(secret_key, nonce)),
    )


def token_of(link: AccessLink, secret_key: str) -> str:
    return derive_token(secret_key, link.nonce)


def review_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/t/{token}"

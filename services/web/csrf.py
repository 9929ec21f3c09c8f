"""CSRF protection for every form: a random cookie, and a form field that is its HMAC.

A page from another site can neither read the cookie nor compute the HMAC without the secret key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from services.errors import Forbidden

CSRF_COOKIE = "rt_csrf"
CSRF_FIELD = "csrf_token"


def form_token(secret_key: str, cookie_value: str) -> str:
    return hmac.new(secret_key.encode(), f"csrf:{cookie_value}".encode(), hashlib.sha256).hexdigest()


def cookie_value(request: Request) -> tuple[str, bool]:
    """The browser's CSRF cookie, or a new one (True) that the response must set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(32), True


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", secure=secure, path="/")


def check(request: Request, submitted: str | None, secret_key: str) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(form_token(secret_key, cookie), submitted):
        raise Forbidden(
            "This form has expired or did not come from this site. Reload the page and submit it again; "
            "nothing was recorded.",
            error="csrf_failed",
        )

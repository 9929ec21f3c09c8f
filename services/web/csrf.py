"""CSRF protection for every form: a random cookie, and a form field that is its HMAC.

A page from another site can neither read the cookie nor compute the HMAC without the secret key.

The cookie is SameSite=Lax, not Strict: a focal point who clicks the review link in webmail again arrives
by a cross-site navigation, and with Strict the browser would not send the cookie, the page would set a
new one, and every form in the tabs opened earlier would then fail. Lax still keeps the cookie off every
cross-site POST, and the form token is checked on every POST anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from services.errors import Forbidden
from services.settings import Settings

CSRF_COOKIE = "rt_csrf"
CSRF_FIELD = "csrf_token"
CSRF_FAILED = (
    "This form has expired or did not come from this site. Reload the page and submit it again; "
    "nothing was recorded."
)


class CsrfFailed(Forbidden):
    """A form without a valid CSRF token: refused before anything is read or recorded."""


def form_token(secret_key: str, cookie_value: str) -> str:
    return hmac.new(secret_key.encode(), f"csrf:{cookie_value}".encode(), hashlib.sha256).hexdigest()


def cookie_value(request: Request) -> tuple[str, bool]:
    """The browser's CSRF cookie, or a new one (True) that the response must set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(32), True


def secure_cookies(settings: Settings) -> bool:
    """Whether cookies get the Secure flag: when the service is published over https.

    Decided by the configured public address, not by the request's scheme: behind a TLS-terminating
    proxy every request reaches the app as plain http, and the cookies must be Secure all the same.
    """
    return settings.public_base_url.lower().startswith("https://")


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="lax", secure=secure, path="/")


def check(request: Request, submitted: str | None, secret_key: str) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(form_token(secret_key, cookie), submitted):
        raise CsrfFailed(CSRF_FAILED, error="csrf_failed")


def render(
    request: Request,
    templates: Jinja2Templates,
    settings: Settings,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A page with forms: the template gets `csrf_token`, and the browser the cookie if it had none."""
    cookie, is_new = cookie_value(request)
    response = templates.TemplateResponse(
        request,
        name,
        {**context, "csrf_token": form_token(settings.secret_key, cookie)},
        status_code=status_code,
        headers=dict(headers or {}),
    )
    if is_new:
        set_cookie(response, cookie, secure=secure_cookies(settings))
    return response

"""Domain errors carry their HTTP status; one handler in the web layer renders them."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    error = "bad_request"

    def __init__(self, detail: str, *, error: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems or []
        if error is not None:
            self.error = error


class InvalidInput(DomainError):
    status_code = 422
    error = "invalid_input"


class Unauthorized(DomainError):
    status_code = 401
    error = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    error = "forbidden"


class NotFound(DomainError):
    status_code = 404
    error = "not_found"


class Gone(DomainError):
    """Existed, and is no more: a review link past its life."""

    status_code = 410
    error = "gone"


class Conflict(DomainError):
    """An expected clash with the current state: already launched, already signed, deadline passed."""

    status_code = 409
    error = "conflict"


class TooManyRequests(DomainError):
    """Throttled; with `retry_after`, the seconds until the request may be made again (Retry-After)."""

    status_code = 429
    error = "too_many_requests"

    def __init__(
        self,
        detail: str,
        *,
        error: str | None = None,
        problems: list[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail, error=error, problems=problems)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    status_code = 413
    error = "too_large"


class ServiceUnavailable(DomainError):
    """A part we depend on (the scheduler, the database) cannot be reached or is too busy; the request
    may be retried after `retry_after` seconds (the Retry-After header)."""

    status_code = 503
    error = "unavailable"
    retry_after = 5

    def __init__(
        self,
        detail: str,
        *,
        error: str | None = None,
        problems: list[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail, error=error, problems=problems)
        if retry_after is not None:
            self.retry_after = retry_after

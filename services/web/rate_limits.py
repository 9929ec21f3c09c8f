"""Rate limits of what strangers can ask for many times: review links and the console's sign-in.

Per client address (services.web.proxies, an IPv6 client by its /64):
- every request to a review link (/t/...): `rate_limit_link_requests` a minute, counted in this process's
  memory. It keeps one client from taking the server's time; each web process counts its own, and a
  focal point's page, comment or sign-off costs no write for it;
- tokens that open nothing: `rate_limit_unknown_tokens` per 15 minutes, counted in the database
  (services.throttle) so that every process counts alike, and only when a token opened nothing, after its
  answer has gone. Past the limit, every link request of that client is refused until the window ends,
  its real links' included (else a 429 for a wrong token and a page for a right one would let the guessing
  go on), so guessing tokens stops after a handful of guesses: a process learns that a client is over
  the limit when it records one of the client's misses, so each process lets at most one more through;
- sign-in attempts: `rate_limit_sign_ins` per 15 minutes, whatever the email (besides each email's
  lockout after failures, services.users), in the database.
A refused request gets 429 with Retry-After, before anything else is read or done. Once a client is known
to be over a limit, this process remembers it until the window ends and refuses that client from memory:
the refusal a guesser meets thousands of times costs next to nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from fastapi import Request

from models.types import utcnow
from services import throttle
from services.errors import TooManyRequests
from services.settings import Settings
from services.throttle import Limit
from services.web import proxies
from services.web.deps import web_state

LINK_WINDOW = timedelta(minutes=1)
UNKNOWN_WINDOW = timedelta(minutes=15)
SIGN_IN_WINDOW = timedelta(minutes=15)
REMEMBERED = 10_000
"""Clients remembered as refused, at most (the oldest forgotten first): memory stays bounded."""
THROTTLED = "Too many requests from your network. Try again in {wait}; nothing was recorded."


def link_limits(settings: Settings) -> tuple[Limit, Limit]:
    return (
        Limit("links.ip", allowed=settings.rate_limit_link_requests, window=LINK_WINDOW),
        Limit("links.unknown.ip", allowed=settings.rate_limit_unknown_tokens, window=UNKNOWN_WINDOW),
    )


def sign_in_limit(settings: Settings) -> Limit:
    return Limit("sign_in.ip", allowed=settings.rate_limit_sign_ins, window=SIGN_IN_WINDOW)


class Refusals:
    """The clients this process knows to be over a limit, and until when, and its own count of each
    client's link requests this minute (per app)."""

    def __init__(self) -> None:
        self._until: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._requests: OrderedDict[str, tuple[datetime, int]] = OrderedDict()

    def count_request(self, subject: str, limit: Limit, now: datetime) -> throttle.Counted:
        """One more link request of `subject` in the current window of `limit`, in memory."""
        ends = throttle.window_of(limit, now)[1]
        window_ends, count = self._requests.get(subject, (ends, 0))
        count = count + 1 if window_ends == ends else 1
        self._requests[subject] = (ends, count)
        self._requests.move_to_end(subject)
        while len(self._requests) > REMEMBERED:
            self._requests.popitem(last=False)
        return throttle.Counted(limit=limit, count=count, window_ends=ends)

    def until(self, kind: str, subject: str, now: datetime) -> datetime | None:
        ends = self._until.get((kind, subject))
        if ends is None:
            return None
        if ends <= now:
            del self._until[(kind, subject)]
            return None
        return ends

    def remember(self, kind: str, subject: str, ends: datetime) -> None:
        self._until[(kind, subject)] = ends
        self._until.move_to_end((kind, subject))
        while len(self._until) > REMEMBERED:
            self._until.popitem(last=False)


def _refusals(request: Request) -> Refusals:
    state = request.app.state
    refusals: Refusals | None = getattr(state, "rate_limit_refusals", None)
    if refusals is None:
        refusals = state.rate_limit_refusals = Refusals()
    return refusals


def _refused(ends: datetime, now: datetime) -> TooManyRequests:
    retry_after = max(1, -(-int((ends - now).total_seconds() * 1000) // 1000))
    return throttle.refusal(THROTTLED, retry_after=retry_after)


def _subject(request: Request) -> str:
    return throttle.client_subject(proxies.client_ip(request, web_state(request).settings))


async def admit_link_request(request: Request) -> None:
    """TooManyRequests if the client is known to be over the unknown-token limit, or makes more link
    requests this minute than allowed. Reads nothing: a token that opened nothing is counted after its
    answer has gone (`count_unknown_token`), so the answer to a wrong token takes the time a right one's
    does."""
    now = utcnow()
    subject = _subject(request)
    refusals = _refusals(request)
    ends = refusals.until("links", subject, now)
    if ends is not None:
        raise _refused(ends, now)
    requests, _unknown = link_limits(web_state(request).settings)
    counted = refusals.count_request(subject, requests, now)
    if counted.exceeded:
        raise _refused(counted.window_ends, now)


async def count_unknown_token(request: Request) -> None:
    """One more token of the client that opened nothing; past the limit, the client is refused here."""
    state = web_state(request)
    subject = _subject(request)
    _requests, unknown = link_limits(state.settings)
    now = utcnow()
    async with state.db.write_session() as session:
        (counted,) = await throttle.record(
            session, hits=[(unknown, subject)], now=now, secret_key=state.settings.secret_key
        )
    if counted.count >= unknown.allowed:
        _refusals(request).remember("links", subject, counted.window_ends)


async def admit_sign_in(request: Request) -> None:
    """Count a sign-in attempt; TooManyRequests if its client is over the limit."""
    now = utcnow()
    subject = _subject(request)
    refusals = _refusals(request)
    ends = refusals.until("sign_in", subject, now)
    if ends is not None:
        raise _refused(ends, now)
    state = web_state(request)
    async with state.db.write_session() as session:
        (counted,) = await throttle.record(
            session,
            hits=[(sign_in_limit(state.settings), subject)],
            now=now,
            secret_key=state.settings.secret_key,
        )
    if counted.exceeded:
        refusals.remember("sign_in", subject, counted.window_ends)
        raise _refused(counted.window_ends, now)

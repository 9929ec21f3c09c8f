"""Rate limits of what strangers can ask for many times: review links and the console's sign-in.

Per client address (services.web.proxies, an IPv6 client by its /64), counted in the database
(services.throttle) so that every web process counts alike:
- every request to a review link (/t/...): `rate_limit_link_requests` a minute;
- tokens that open nothing: `rate_limit_unknown_tokens` per 15 minutes; past it, every link request of
  that client is refused until the window ends, so guessing tokens stops after a handful of guesses;
- sign-in attempts: `rate_limit_sign_ins` per 15 minutes, whatever the email (besides each email's
  lockout after failures, services.users).
A refused request gets 429 with Retry-After, before anything else is read or done. Once the database has
said a client is over a limit, this process remembers it until the window ends and refuses that client
without asking again: the refusal a guesser meets thousands of times costs next to nothing.
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
    """The clients this process knows to be over a limit, and until when (per app)."""

    def __init__(self) -> None:
        self._until: OrderedDict[tuple[str, str], datetime] = OrderedDict()

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
    minutes = max(1, -(-retry_after // 60))
    return TooManyRequests(
        THROTTLED.format(wait="a minute" if minutes == 1 else f"{minutes} minutes"),
        error="too_many_requests",
        retry_after=retry_after,
    )


def _subject(request: Request) -> str:
    return throttle.client_subject(proxies.client_ip(request, web_state(request).settings))


async def admit_link_request(request: Request) -> None:
    """TooManyRequests if the client is over either link limit. Only reads the counters: the request is
    counted after its answer has gone (`count_link_request`), the same way whether its token opened a
    link or not, so that neither the answer's time nor its work tells one from the other."""
    now = utcnow()
    subject = _subject(request)
    refusals = _refusals(request)
    ends = refusals.until("links", subject, now)
    if ends is not None:
        raise _refused(ends, now)
    state = web_state(request)
    limits = link_limits(state.settings)
    async with state.db.session() as session:
        counters = await throttle.peek(
            session,
            limits=[(limit, subject) for limit in limits],
            now=now,
            secret_key=state.settings.secret_key,
        )
    for counted in counters:
        if counted.count >= counted.limit.allowed:
            refusals.remember("links", subject, counted.window_ends)
            raise _refused(counted.window_ends, now)


async def count_link_request(request: Request, *, unknown_token: bool) -> None:
    """One more request of the client to a link, and one more token that opened nothing if so."""
    state = web_state(request)
    subject = _subject(request)
    requests, unknown = link_limits(state.settings)
    hits = [(requests, subject), (unknown, subject)] if unknown_token else [(requests, subject)]
    async with state.db.write_session() as session:
        await throttle.record(session, hits=hits, now=utcnow(), secret_key=state.settings.secret_key)


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

"""Lost links: someone types an email address and, if it is a contact of an open task, gets their links.

The page answers the same whatever the address: whether it belongs to anybody must not show, neither in
the answer nor in the time it takes. So `request_links` does the same work for every address. It counts
the request (per client and per address, `services.throttle`), looks the address up, and then, in a
savepoint, adds one message to the outbox and its audit events: for a contact, the message with every
working link of theirs; for anybody else (or a contact over their limit) a message of the same shape to
that address, which the savepoint then takes back. Nothing of an unknown address is kept but its
counter, a keyed digest.

The message's key names the person (a digest of the address) and a window of `MESSAGE_WINDOW`: repeated
requests within one window send one message. Its links get fresh tokens when it is delivered, like a
day's reminder; a link withdrawn or a round closed meanwhile leaves its item out.

A client over its limit is refused (429 with Retry-After) before the address is looked at, whatever it
is; an address over its limit gets the same answer as any other, and no further message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, func
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ActorKind, ContactRole, Language, MessageKind, RoundStatus
from models.tables import ACCESS_LINKS, ORGANISATIONS, REVIEW_TASKS, ROUNDS
from models.types import utcnow
from services import outbox, throttle
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.formatting import when_text
from services.hashing import sha256_hex
from services.invitations import sender_name
from services.links import ClientInfo
from services.outbox import Mail
from services.scheduling import UNSETTLED_STATUSES
from services.settings import Settings
from services.throttle import Limit

PER_CLIENT = Limit("lost_link.ip", allowed=5, window=timedelta(minutes=15))
PER_ADDRESS = Limit("lost_link.email", allowed=3, window=timedelta(hours=1))
MESSAGE_WINDOW = timedelta(minutes=15)
"""Requests for one address within one such window send one message."""
ACTOR = Actor(kind=ActorKind.system, id="lost-link-page")
THROTTLED = "Too many requests from your network. Try again in {wait}; nothing was sent."


@dataclass(frozen=True)
class LostLinkOutcome:
    """What the page does not show: the round whose scheduler delivers the message decided, if any."""

    round_id: int | None


@dataclass(frozen=True)
class _Held:
    """A working link of the address, with what its item in the message says."""

    link_id: str
    role: str
    email: str
    name: str
    task_id: int
    deadline: datetime
    round_id: int
    round_title: str
    round_timezone: str
    grace_period_hours: int
    name_en: str
    name_sq: str
    language: str
    timezone: str | None

    @property
    def writable_until(self) -> datetime:
        return self.deadline + timedelta(hours=self.grace_period_hours)


def normalised(email: str) -> str:
    """The address as it is looked up and counted: trimmed, lower case."""
    return email.strip().lower()


def message_key(address: str, now: datetime) -> str:
    length = MESSAGE_WINDOW.total_seconds()
    begins = datetime.fromtimestamp(now.timestamp() // length * length, UTC)
    # An address may be 320 characters; the key names the person by a digest of it.
    return f"lost_link:{sha256_hex(address)[:24]}:{begins:%Y-%m-%dT%H:%MZ}"


@transactional
async def request_links(
    session: AsyncSession,
    *,
    email: str,
    client: ClientInfo,
    settings: Settings,
    now: datetime | None = None,
) -> LostLinkOutcome:
    """Send the person behind `email` their working links, if there is such a person; the caller has
    checked that it looks like an address. Raises TooManyRequests (with `retry_after`) for a client over
    its limit."""
    now = now or utcnow()
    address = normalised(email)
    by_client, by_address = await throttle.count(
        session,
        hits=[(PER_CLIENT, throttle.client_subject(client.ip)), (PER_ADDRESS, address)],
        now=now,
        secret_key=settings.secret_key,
    )
    if by_client.exceeded:
        raise throttle.refusal(THROTTLED, retry_after=by_client.retry_after(now))
    held = await _links_of(session, address)
    mail = _message(address, held, now, settings) if held else _stand_in(address, now, settings)
    events = _events(mail, held, client) if held else _events(mail, None, client)
    sends = bool(held) and not by_address.exceeded
    async with trail.chain_turn(session):
        savepoint = await session.begin_nested()
        added = await outbox.enqueue_new(session, mails=[mail])
        await trail.append_many(session, events=events)
        sent = sends and mail.key in added
        if sent:
            await savepoint.commit()
        else:
            await savepoint.rollback()
        await session.commit()
    return LostLinkOutcome(round_id=mail.round_id if sent else None)


# Plain columns, not model objects: building them is work that an unknown address would not cause.
_LINKS_OF = (
    sa.select(
        ACCESS_LINKS.c.id.label("link_id"),
        ACCESS_LINKS.c.role,
        ACCESS_LINKS.c.email,
        ACCESS_LINKS.c.name,
        REVIEW_TASKS.c.id.label("task_id"),
        REVIEW_TASKS.c.deadline,
        ROUNDS.c.id.label("round_id"),
        ROUNDS.c.title.label("round_title"),
        ROUNDS.c.timezone.label("round_timezone"),
        ROUNDS.c.grace_period_hours,
        ORGANISATIONS.c.name_en,
        ORGANISATIONS.c.name_sq,
        ORGANISATIONS.c.language,
        ORGANISATIONS.c.timezone,
    )
    .join(REVIEW_TASKS, REVIEW_TASKS.c.id == ACCESS_LINKS.c.task_id)
    .join(ROUNDS, ROUNDS.c.id == ACCESS_LINKS.c.round_id)
    .join(ORGANISATIONS, ORGANISATIONS.c.id == REVIEW_TASKS.c.organisation_id)
    .where(
        func.lower(ACCESS_LINKS.c.email) == func.lower(bindparam("address")),
        ACCESS_LINKS.c.revoked_at.is_(None),
        ROUNDS.c.status == RoundStatus.open,
        REVIEW_TASKS.c.status.in_(UNSETTLED_STATUSES),
    )
    .order_by(REVIEW_TASKS.c.deadline, REVIEW_TASKS.c.id, ACCESS_LINKS.c.role.desc())
)


async def _links_of(session: AsyncSession, address: str) -> list[_Held]:
    """The address's links that work: not withdrawn, of a task not settled in an open round. Compared
    through the database's lower() on both sides, so that what the database holds matches itself."""
    connection = await session.connection()
    rows = await connection.execute(_LINKS_OF, {"address": address})
    return [_Held(**row._mapping) for row in rows]


def _message(address: str, held: list[_Held], now: datetime, settings: Settings) -> Mail:
    first = held[0]
    language = Language(first.language)
    items = [_item(each, language, now) for each in held]
    return _mail(
        address,
        now,
        settings,
        to_email=first.email,
        to_name=first.name,
        language=language,
        items=items,
        round_id=first.round_id,
        task_id=first.task_id if len({each.task_id for each in held}) == 1 else None,
        about_rounds=tuple(sorted({each.round_id for each in held})),
    )


def _item(held: _Held, language: Language, now: datetime) -> dict[str, Any]:
    local_name = held.name_sq if language == Language.sq else ""
    return {
        "link_id": held.link_id,
        "round_title": held.round_title,
        "organisation_name": local_name or held.name_en,
        "contact_role": str(held.role),
        "deadline_text": when_text(
            held.deadline, timezone=held.timezone or held.round_timezone, language=language
        ),
        "deadline_passed": now >= held.writable_until,
    }


def _stand_in(address: str, now: datetime, settings: Settings) -> Mail:
    """The message an address of nobody's would get, made as a real one is: it is written and taken back,
    so that the request costs what a contact's does."""
    item = {
        "link_id": "0" * 32,
        "round_title": "",
        "organisation_name": "",
        "contact_role": str(ContactRole.focal_point),
        "deadline_text": when_text(now, timezone=settings.timezone, language=Language.en),
        "deadline_passed": False,
    }
    return _mail(
        address,
        now,
        settings,
        to_email=address,
        to_name="",
        language=Language.en,
        items=[item],
        round_id=None,
        task_id=None,
    )


def _mail(
    address: str,
    now: datetime,
    settings: Settings,
    *,
    to_email: str,
    to_name: str,
    language: Language,
    items: list[dict[str, Any]],
    round_id: int | None,
    task_id: int | None,
    about_rounds: tuple[int, ...] = (),
) -> Mail:
    return Mail(
        key=message_key(address, now),
        kind=MessageKind.lost_link,
        to_email=to_email,
        to_name=to_name,
        language=language,
        context={"contact_name": to_name, "items": items, "sender_name": sender_name(settings)},
        round_id=round_id,
        task_id=task_id,
        about_rounds=about_rounds,
    )


def _events(mail: Mail, held: list[_Held] | None, client: ClientInfo) -> list[NewEvent]:
    """One `link.resent` per link the message carries (no token: it is made when the message goes)."""
    if held is None:
        return [NewEvent("link.resent", ACTOR, None, None, {"message": mail.key, "ip": client.ip})]
    return [
        NewEvent(
            "link.resent",
            ACTOR,
            each.round_id,
            each.task_id,
            {"link_id": each.link_id, "role": str(each.role), "message": mail.key, "ip": client.ip},
        )
        for each in held
    ]

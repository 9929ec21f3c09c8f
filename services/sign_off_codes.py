"""The step-up at sign-off: a 6-digit code emailed to the signer's own address confirms their sign-off.

A round that asks for it (`Round.sign_off_code_required`, on by default) records no sign-off from the form
alone: the form waits beside a code (`SignOffCode`) whose email goes to the link's contact, and only the
right code, entered through the same link, records it (services.reviews). So a forwarded link cannot sign
for an organisation. The code is never stored (services.hashing.sign_off_code); it works for
`VALID_FOR`, dies after `MAX_ATTEMPTS` wrong tries, and a new one replaces the old. A task gets at most
`CODES_PER_WINDOW` codes per `VALID_FOR`, so the form cannot be used to flood the contact's mailbox.

These are steps of the use cases in services.reviews, in their transactions (the task row locked): the
caller commits.
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Language, MessageKind
from models.reviews import SignOffCode, SignOffCreate
from services import outbox
from services.audit import trail
from services.errors import Conflict, InvalidInput, TooManyRequests
from services.formatting import when_text
from services.hashing import SIGN_OFF_CODE_DIGITS, sign_off_code
from services.invitations import organisation_name, sender_name
from services.links import ClientInfo, LinkContext
from services.outbox import Mail
from services.settings import Settings

VALID_FOR = timedelta(minutes=15)
MAX_ATTEMPTS = 5
CODES_PER_WINDOW = 3

TOO_MANY_CODES = (
    "Three codes have been sent for this sign-off in the last 15 minutes; wait a few minutes, then ask "
    "for a new one. Check your spam folder for the codes already sent."
)
NO_CODE = (
    "There is no sign-off waiting for a code on this link: fill in the sign-off form, and a code will be "
    "emailed to you."
)
CODE_EXPIRED = "This code has expired (a code works for 15 minutes): ask for a new one."
CODE_DEAD = "This code was entered wrongly 5 times and no longer works: ask for a new one."
CODE_MALFORMED = "The code is the 6 digits in the email we sent you."
CODE_WRONG = "That code is not right. Check the latest email we sent you and try again."


@dataclass(frozen=True)
class CodeSent:
    """The sign-off waits for the code emailed to `to_email`."""

    round_id: int
    to_email: str
    expires_at: datetime


@dataclass(frozen=True)
class PendingSignOff:
    """What the review page shows while a sign-off waits for its code."""

    to_email: str
    expires_at: datetime
    decision: str
    statement: str
    signer_name: str
    signer_title: str
    submission_id: str
    attempts_left: int
    usable: bool
    """False once it expired or was tried too often: only a new code goes on from there."""


async def latest(session: AsyncSession, *, link_id: str) -> SignOffCode | None:
    """The link's newest code, unless it was used or replaced."""
    return (
        await session.exec(
            select(SignOffCode)
            .where(
                SignOffCode.link_id == link_id,
                col(SignOffCode.used_at).is_(None),
                col(SignOffCode.superseded_at).is_(None),
            )
            .order_by(col(SignOffCode.id).desc())
            .limit(1)
        )
    ).first()


def usable(code: SignOffCode, now: datetime) -> bool:
    return code.attempts < MAX_ATTEMPTS and now < code.expires_at


def pending_view(code: SignOffCode, *, to_email: str, now: datetime) -> PendingSignOff:
    form = code.pending
    return PendingSignOff(
        to_email=to_email,
        expires_at=code.expires_at,
        decision=form.get("decision", ""),
        statement=form.get("statement", ""),
        signer_name=form.get("signer_name", ""),
        signer_title=form.get("signer_title", ""),
        submission_id=form.get("submission_id", ""),
        attempts_left=max(0, MAX_ATTEMPTS - code.attempts),
        usable=usable(code, now),
    )


async def issue(
    session: AsyncSession,
    *,
    context: LinkContext,
    pending: SignOffCreate,
    client: ClientInfo,
    settings: Settings,
    now: datetime,
    again: bool = False,
) -> CodeSent:
    """A new code for the link, replacing its earlier ones, with its email in the outbox and its audit
    event. The same form submitted again (a double click) gets the code already sent, unless a new code
    is asked for (`again`)."""
    current = await latest(session, link_id=context.link.id)
    if (
        not again
        and current is not None
        and usable(current, now)
        and current.pending.get("submission_id") == pending.submission_id
    ):
        return CodeSent(context.round.id or 0, context.link.email, current.expires_at)
    await _within_limit(session, task_id=context.task.id or 0, now=now)
    await session.exec(
        update(SignOffCode)
        .where(
            col(SignOffCode.link_id) == context.link.id,
            col(SignOffCode.used_at).is_(None),
            col(SignOffCode.superseded_at).is_(None),
        )
        .values(superseded_at=now)
    )
    code = SignOffCode(
        task_id=context.task.id or 0,
        round_id=context.round.id or 0,
        link_id=context.link.id,
        code_salt=secrets.token_hex(32),
        pending=pending.model_dump(mode="json", include={*SIGN_OFF_FIELDS}),
        created_at=now,
        expires_at=now + VALID_FOR,
    )
    session.add(code)
    await session.flush()
    language = Language(context.organisation.language)
    timezone = context.organisation.timezone or context.round.timezone
    await outbox.enqueue(
        session,
        mails=[
            Mail(
                key=f"sign_off_code:{code.id}",
                kind=MessageKind.sign_off_code,
                to_email=context.link.email,
                to_name=context.link.name,
                language=language,
                round_id=context.round.id,
                task_id=context.task.id,
                # The salt, not the code: delivery works the code out as it writes the email.
                context={
                    "code_salt": code.code_salt,
                    "contact_name": context.link.name,
                    "signer_name": pending.signer_name,
                    "round_title": context.round.title,
                    "organisation_name": organisation_name(context.organisation, language),
                    "expires_text": when_text(code.expires_at, timezone=timezone, language=language),
                    "minutes": int(VALID_FOR.total_seconds() // 60),
                    "sender_name": sender_name(settings),
                },
            )
        ],
    )
    await trail.append(
        session,
        actor=context.actor,
        action="signoff.code_sent",
        round_id=context.round.id,
        task_id=context.task.id,
        data={
            "organisation": context.organisation.key,
            "link_id": context.link.id,
            "code_id": code.id,
            "to": context.link.email,
            "expires_at": code.expires_at.isoformat(),
            "ip": client.ip,
        },
    )
    return CodeSent(context.round.id or 0, context.link.email, code.expires_at)


SIGN_OFF_FIELDS = ("decision", "statement", "signer_name", "signer_title", "submission_id")


async def _within_limit(session: AsyncSession, *, task_id: int, now: datetime) -> None:
    since = now - VALID_FOR
    count, oldest = (
        await session.exec(
            select(func.count(), func.min(SignOffCode.created_at)).where(
                SignOffCode.task_id == task_id, col(SignOffCode.created_at) > since
            )
        )
    ).one()
    if count >= CODES_PER_WINDOW and oldest is not None:
        wait = max(1, math.ceil((oldest + VALID_FOR - now).total_seconds()))
        raise TooManyRequests(TOO_MANY_CODES, error="too_many_codes", retry_after=wait)


def normalised(entered: str) -> str:
    """The code as typed, with the spaces and dashes people copy with it taken out."""
    digits = "".join(entered.split()).replace("-", "")
    if len(digits) != SIGN_OFF_CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        raise InvalidInput(CODE_MALFORMED, error="code_malformed")
    return digits


def check(code: SignOffCode | None, entered: str, *, settings: Settings, now: datetime) -> bool:
    """Whether `entered` is the code; raises when there is no code that could be right any more."""
    if code is None:
        raise Conflict(NO_CODE, error="no_code_pending")
    if code.attempts >= MAX_ATTEMPTS:
        raise Conflict(CODE_DEAD, error="code_dead")
    if now >= code.expires_at:
        raise Conflict(CODE_EXPIRED, error="code_expired")
    expected = sign_off_code(settings.secret_key, code.code_salt)
    return hmac.compare_digest(expected, normalised(entered))


def wrong(attempts: int) -> InvalidInput | Conflict:
    """The refusal of a wrong code, once it counted as the code's `attempts`-th (the page says how many
    tries are left)."""
    if attempts >= MAX_ATTEMPTS:
        return Conflict(CODE_DEAD, error="code_dead")
    return InvalidInput(CODE_WRONG, error="code_wrong")

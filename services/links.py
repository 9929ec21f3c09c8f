"""Personal review links: one per contact of a task, opened by a random token of which only the hash is kept.

A link is created when its round opens; its token is made when the invitation is sent (so it exists only
in that email). Sending again, or reissuing, makes a new token and the old one stops working.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ContactRole
from models.reviews import AccessLink
from services import audit
from services.db import transactional
from services.errors import Conflict, NotFound
from services.hashing import new_secret, sha256_hex

token_sha256 = sha256_hex


def new_link_row(
    *, task_id: int, round_id: int, role: ContactRole, email: str, name: str, created_at: datetime
) -> dict[str, object]:
    """A new link as a row for a bulk insert (a national round issues thousands at once); it has no
    token until its invitation is sent."""
    return {
        "id": uuid.uuid4().hex,
        "task_id": task_id,
        "round_id": round_id,
        "role": role,
        "email": email,
        "name": name,
        "created_at": created_at,
    }


def issue_token(link: AccessLink) -> str:
    """Give the link a new token (the caller commits); returns the token, which is not kept anywhere."""
    token, digest = new_secret()
    link.token_sha256 = digest
    return token


def invitation_due(now: datetime) -> list[ColumnElement[bool]]:
    """Conditions of a link whose invitation is still to be sent and that no running attempt owns."""
    return [
        col(AccessLink.invited_at).is_(None),
        col(AccessLink.invitation_error).is_(None),
        col(AccessLink.revoked_at).is_(None),
        or_(
            col(AccessLink.invitation_claimed_until).is_(None), col(AccessLink.invitation_claimed_until) < now
        ),
    ]


def review_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/t/{token}"


@transactional
async def reissue_token(session: AsyncSession, *, link_id: str, actor: Actor) -> str:
    """A fresh token for a link, e.g. to hand a focal point a new link by hand; the old one stops working."""
    link = (
        await session.exec(
            select(AccessLink)
            .where(AccessLink.id == link_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if link is None:
        raise NotFound(f"there is no review link {link_id}")
    if link.revoked_at is not None:
        raise Conflict("this review link has been withdrawn; it cannot be given a new token")
    token = issue_token(link)
    session.add(link)
    await audit.append(
        session,
        actor=actor,
        action="link.token_issued",
        round_id=link.round_id,
        task_id=link.task_id,
        data={"link_id": link.id, "email": link.email},
    )
    await session.commit()
    return token

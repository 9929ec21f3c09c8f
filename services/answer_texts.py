"""Reusable answer texts: what a secretariat says again and again ("Outside the scope of this strategy")."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.responses import AnswerText, AnswerTextCreate, AnswerTextRead
from services.audit import trail
from services.db import transactional
from services.errors import NotFound


@transactional
async def save(
    session: AsyncSession, *, data: AnswerTextCreate, actor: Actor, user_id: int | None
) -> AnswerTextRead:
    text = AnswerText(**data.model_dump(), created_by_id=user_id)
    session.add(text)
    await session.flush()
    await trail.append(
        session,
        actor=actor,
        action="answer_text.saved",
        data={"answer_text_id": text.id, "title": text.title, "response": str(text.response)},
    )
    read = AnswerTextRead.model_validate(text, from_attributes=True)
    await session.commit()
    return read


async def list_texts(session: AsyncSession) -> list[AnswerTextRead]:
    rows = (await session.exec(select(AnswerText).order_by(col(AnswerText.title), col(AnswerText.id)))).all()
    return [AnswerTextRead.model_validate(row, from_attributes=True) for row in rows]


async def get_text(session: AsyncSession, *, answer_text_id: int) -> AnswerTextRead:
    found = await session.get(AnswerText, answer_text_id)
    if found is None:
        raise NotFound(f"there is no saved answer {answer_text_id}")
    return AnswerTextRead.model_validate(found, from_attributes=True)

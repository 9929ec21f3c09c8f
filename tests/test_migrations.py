from sqlmodel import select

from models.audit import GENESIS_HASH, AuditChainHead
from services.db import Database


async def test_migrated_database_starts_an_empty_audit_chain(db: Database) -> None:
    async with db.session() as session:
        head = (await session.exec(select(AuditChainHead))).one()
    assert (head.seq, head.hash) == (0, GENESIS_HASH)

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text, update
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel, col, select

from models.audit import GENESIS_HASH, AuditChainHead
from models.enums import OutboxStatus, Role
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from notifications.mailbox import DevMailbox, SinkServer
from notifications.smtp import SmtpSender
from services import delivery, review_page, rounds
from services.db import Database
from services.hashing import sha256_hex
from services.migrate import downgrade, upgrade
from services.settings import Settings
from tests.harness import TEST_ACTOR, create_account, seed_round, user_id_of


async def test_migrated_database_starts_an_empty_audit_chain(db: Database) -> None:
    async with db.session() as session:
        head = (await session.exec(select(AuditChainHead))).one()
    assert (head.seq, head.hash) == (0, GENESIS_HASH)


async def test_the_migrations_build_exactly_the_schema_the_models_describe(db: Database) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_a_round_sent_before_the_outbox_keeps_its_record_and_working_links_across_the_upgrade(
    database_url: str, db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    """Down to the schema before the outbox (sent_messages, one token per link) and up again: what was
    sent stays on record, and every emailed link still opens its page."""
    settings = settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port})
    round_id = await seed_round(
        db,
        deadline=datetime.now(UTC) + timedelta(days=5),
        keys=["ministry-of-interior", "ministry-of-finance"],
    )
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    sender = SmtpSender(delivery.smtp_config(settings))
    try:
        assert (await delivery.deliver_due(db, sender, settings, round_id=round_id, limit=100)).sent == 4
    finally:
        await sender.close()
    tokens = [
        url.rsplit("/t/", 1)[1]
        for entry in mailbox.list()
        for url in mailbox.get(entry.key).links
        if "/t/" in url
    ]
    assert len(tokens) == 4

    await db.dispose()
    await downgrade(database_url, "0004")
    await downgrade(database_url, "0002")
    before = Database(database_url)
    try:
        async with before.engine.connect() as connection:
            sent = (await connection.execute(text("SELECT purpose_key, status FROM sent_messages"))).all()
            hashed = (await connection.execute(text("SELECT token_sha256 FROM access_links"))).scalars().all()
    finally:
        await before.dispose()
    assert len(sent) == 4
    assert {status for _key, status in sent} == {"sent"}
    assert all(key.startswith("invitation:") for key, _status in sent)
    assert sorted(hashed) == sorted(sha256_hex(token) for token in tokens)

    await upgrade(database_url)
    after = Database(database_url)
    try:
        async with after.session() as session:
            rows = (await session.exec(select(OutboxMessage))).all()
            assert sorted(row.key for row in rows) == sorted(
                f"invitation:{link.task_id}:{link.role}"
                for link in (await session.exec(select(AccessLink))).all()
            )
            assert {row.status for row in rows} == {OutboxStatus.sent}
            for token in tokens:
                page = await review_page.review_page(session, token=token)
                assert page.context.round.id == round_id
                # The round's deadline became its tasks'; a round under way was promised no reminders.
                assert page.context.task.deadline == page.context.round.deadline
                assert page.context.round.reminders().working_days_before == []
    finally:
        await after.dispose()


async def test_tasks_made_before_roles_get_the_role_of_their_kind_across_the_upgrade(
    database_url: str, db: Database
) -> None:
    """Down to the schema before roles and weights and up again: ministries' tasks become approvers, the
    others consulted, and older comments are remarks."""
    round_id = await seed_round(
        db,
        deadline=datetime.now(UTC) + timedelta(days=5),
        keys=["ministry-of-interior", "municipality-tirane"],
    )
    await db.dispose()
    await downgrade(database_url, "0006")
    await upgrade(database_url)
    after = Database(database_url)
    try:
        async with after.engine.connect() as connection:
            roles = (
                await connection.execute(
                    text(
                        "SELECT organisations.key, review_tasks.role FROM review_tasks "
                        "JOIN organisations ON organisations.id = review_tasks.organisation_id "
                        "WHERE review_tasks.round_id = :round_id"
                    ),
                    {"round_id": round_id},
                )
            ).all()
    finally:
        await after.dispose()
    assert dict(roles) == {"ministry-of-interior": "approver", "municipality-tirane": "consulted"}


async def test_email_still_to_send_gets_the_round_s_reply_to_across_the_upgrade(
    database_url: str, db: Database, settings: Settings
) -> None:
    """Down to the schema before the outbox kept Reply-To and up again: invitations still to be sent get
    their round's contact, else the address of the coordinator who created it; one sent keeps none."""
    coordinator = "coordinator@secretariat.example"
    await create_account(db, coordinator, Role.coordinator)
    deadline = datetime.now(UTC) + timedelta(days=5)
    with_contact = await seed_round(
        db,
        deadline=deadline,
        keys=["ministry-of-interior"],
        contact_name="Arta Hoxha",
        contact_email="arta.hoxha@kryeministria.gov.example",
    )
    without = await seed_round(
        db, deadline=deadline, keys=["ministry-of-finance"], created_by=await user_id_of(db, coordinator)
    )
    for round_id in (with_contact, without):
        async with db.write_session() as session:
            await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    async with db.write_session() as session:
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.round_id) == without, col(OutboxMessage.key).endswith(":alternate"))
            .values(status=OutboxStatus.sent)
        )
        await session.commit()

    await db.dispose()
    await downgrade(database_url, "0007")
    await upgrade(database_url)
    after = Database(database_url)
    try:
        async with after.session() as session:
            found = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    finally:
        await after.dispose()
    assert {(row.round_id, row.status, row.reply_to) for row in found} == {
        (with_contact, OutboxStatus.pending, "arta.hoxha@kryeministria.gov.example"),
        (without, OutboxStatus.pending, coordinator),
        (without, OutboxStatus.sent, None),
    }

"""The round scheduler on real Temporal servers, a real SMTP sink and both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

import pytest
from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from models.enums import Decision, OutboxStatus, RoundStatus, TaskStatus
from models.outbox import OutboxMessage
from models.reviews import AccessLink, SignOffCreate
from models.rounds import ReviewTask, Round
from notifications.mailbox import DevMailbox
from services import reviews, round_endings, rounds
from services.db import Database
from services.links import ClientInfo
from services.settings import Settings
from tests.conftest import TEMPORAL_TEST_SERVER, Stack
from tests.harness import (
    SIGNING_SETTINGS,
    TEST_ACTOR,
    WorkerHandle,
    eventually,
    messages_to,
    review_token,
    seed_round,
    user_id_of,
)
from tests.notifications.support import RecordingSink
from workflows.client import Scheduler, launch_round, replace_outdated_schedulers, round_workflow_id
from workflows.names import ROUND_WORKFLOW, SCHEDULER_VERSION
from workflows.payloads import RoundRef

THREE = ["ministry-of-interior", "ministry-of-finance", "municipality-tirane"]
CLIENT = ClientInfo(ip="127.0.0.1", user_agent="pytest")


async def outbox_of(db: Database, round_id: int) -> list[OutboxMessage]:
    async with db.session() as session:
        return list(await session.exec(select(OutboxMessage).where(OutboxMessage.round_id == round_id)))


async def links_of(db: Database, round_id: int) -> list[AccessLink]:
    async with db.session() as session:
        return list(await session.exec(select(AccessLink).where(AccessLink.round_id == round_id)))


def tokens_by_recipient(mailbox: DevMailbox) -> dict[str, list[str]]:
    """The review tokens each address received, reading the mailbox once."""
    found: dict[str, list[str]] = {}
    for entry in mailbox.list(limit=100_000):
        message = mailbox.get(entry.key)
        tokens = {url.rsplit("/t/", 1)[1] for url in message.links if "/t/" in url}
        found.setdefault(parseaddr(message.to)[1], []).extend(sorted(tokens))
    return found


async def sign_off_task(db: Database, mailbox: DevMailbox, link: AccessLink, decision: Decision) -> None:
    """The focal point signs off through the link in their invitation."""
    await sign_off_with(db, review_token(mailbox, link.email), decision)


async def sign_off_with(db: Database, token: str, decision: Decision) -> None:
    if decision == Decision.object:  # an objecting sign-off names the comments it objects with
        await _object_to_the_first_section(db, token)
    async with db.write_session() as session:
        await reviews.sign_off(
            session,
            token=token,
            data=SignOffCreate(
                decision=decision,
                statement="Agreed by the directorate.",
                signer_name="Elira Marku",
                signer_title="Director General",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=CLIENT,
            settings=SIGNING_SETTINGS,
        )


async def _object_to_the_first_section(db: Database, token: str) -> None:
    from models.reviews import CommentCreate
    from services import comments, links

    async with db.session() as session:
        task = (await links.resolve(session, token=token, lock=False)).context.task
    async with db.write_session() as session:
        await comments.add_comment(
            session,
            token=token,
            data=CommentCreate(
                section_id=task.section_ids[0],
                body="This section contradicts the Law on Foreigners.",
                weight="objection",
                submission_id=uuid.uuid4().hex,
            ),
            client=CLIENT,
        )


async def round_row(db: Database, round_id: int) -> Round:
    async with db.session() as session:
        found = await session.get(Round, round_id)
    assert found is not None
    return found


async def task_statuses(db: Database, round_id: int) -> Counter[str]:
    async with db.session() as session:
        rows = await session.exec(select(ReviewTask.status).where(ReviewTask.round_id == round_id))
        return Counter(str(status) for status in rows)


async def test_launching_twice_starts_one_scheduler_and_one_invitation_each(stack: Stack) -> None:
    round_id = await seed_round(stack.db, deadline=datetime.now(UTC) + timedelta(days=3), keys=THREE)

    first = await launch_round(stack.db, stack.scheduler, round_id=round_id, actor=TEST_ACTOR)
    second = await launch_round(stack.db, stack.scheduler, round_id=round_id, actor=TEST_ACTOR)

    assert (first, second) == (True, False)
    links_ = await eventually(lambda: links_of(stack.db, round_id), lambda found: len(found) == 6)
    await eventually(lambda: _mail_count(stack.mailbox), lambda count: count == 6)
    runs = [
        run
        async for run in stack.client.list_workflows(
            f"WorkflowId = '{round_workflow_id(stack.settings, round_id)}'"
        )
    ]
    assert len(runs) == 1
    for link in links_:
        assert len(messages_to(stack.mailbox, link.email)) == 1


async def test_a_worker_restarted_mid_round_still_completes_it(stack: Stack) -> None:
    """Small batches, one a turn, so the restart lands between them; every invitation still arrives exactly
    once."""
    settings = stack.settings.model_copy(update={"mail_batch_size": 10, "delivery_turn_seconds": 0})
    await stack.worker.stop()
    worker = WorkerHandle(stack.client, stack.db, settings)
    await worker.start()
    coordinator = await user_id_of(stack.db, "coordinator@secretariat.example")
    round_id = await seed_round(
        stack.db, deadline=datetime.now(UTC) + timedelta(days=3), created_by=coordinator
    )
    await launch_round(stack.db, stack.scheduler, round_id=round_id, actor=TEST_ACTOR)

    await eventually(lambda: _mail_count(stack.mailbox), lambda count: count >= 20, every=0.01)
    await worker.stop()
    interrupted_at = stack.mailbox.count()
    await worker.start()

    every_link = await links_of(stack.db, round_id)
    assert len(every_link) == 88 + 82  # 88 focal points and the 82 organisations with an alternate
    await eventually(lambda: _mail_count(stack.mailbox), lambda count: count == len(every_link))
    assert interrupted_at < len(every_link)
    received = tokens_by_recipient(stack.mailbox)
    assert {address: len(tokens) for address, tokens in received.items()} == {
        link.email: 1 for link in every_link
    }

    await worker.stop()  # signed off while no worker runs: the wake-up waits in Temporal
    focal_points = [link for link in every_link if link.role == "focal_point"]
    for link in focal_points:
        await sign_off_with(stack.db, received[link.email][0], Decision.approve)
    await stack.scheduler.wake(round_id)
    await worker.start()
    try:
        handle = stack.client.get_workflow_handle(round_workflow_id(stack.settings, round_id))
        assert await handle.result() == "closed"
    finally:
        await worker.stop()
    closed = await round_row(stack.db, round_id)
    assert (closed.status, closed.close_reason) == (RoundStatus.closed, "all_signed_off")
    assert await task_statuses(stack.db, round_id) == {"signed_off": 88}
    assert len(messages_to(stack.mailbox, "coordinator@secretariat.example")) == 1


async def test_a_refused_invitation_is_recorded_shown_and_not_retried(
    stack: Stack, sink_handler: RecordingSink
) -> None:
    refused = "migration.alt@ministry-of-finance.gov.example"
    sink_handler.rcpt_replies[refused] = "550 5.1.1 <" + refused + ">: no such user"
    round_id = await seed_round(stack.db, deadline=datetime.now(UTC) + timedelta(days=3), keys=THREE)
    await launch_round(stack.db, stack.scheduler, round_id=round_id, actor=TEST_ACTOR)

    messages = await eventually(
        lambda: outbox_of(stack.db, round_id),
        lambda found: len(found) == 6 and all(row.status != OutboxStatus.pending for row in found),
    )
    (bounced,) = [row for row in messages if row.status == OutboxStatus.failed]
    assert bounced.to_email == refused
    assert "550" in (bounced.last_error or "")
    assert stack.mailbox.count() == 5
    detail = (await stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.auditor)).json()
    finance = next(task for task in detail["tasks"] if task["organisation_key"] == "ministry-of-finance")
    assert finance["status"] == "invited"  # the focal point got theirs
    assert finance["undeliverable"] == [f"{refused}: {bounced.last_error}"]
    page = await stack.http.get(
        f"/api/v1/audit/events?round_id={round_id}&action=email.failed", headers=stack.auditor
    )
    assert [event["data"]["to"] for event in page.json()["events"]] == [refused]
    del sink_handler.rcpt_replies[refused]
    await stack.scheduler.wake(round_id)
    await asyncio.sleep(1)
    assert stack.mailbox.count() == 5  # a permanent refusal is not retried


async def _mail_count(mailbox: DevMailbox) -> int:
    return mailbox.count()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEMPORAL_TEST_SERVER), test_server_startup_timeout=timedelta(seconds=60)
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_after_the_deadline_the_coordinator_closes_and_silence_means_content(
    db: Database, stack_settings: Settings, time_skipping_env: WorkflowEnvironment, mailbox: DevMailbox
) -> None:
    """Two weeks pass in seconds on the time-skipping server; activities still use the real DB and SMTP.
    The deadline makes the unsigned tasks overdue and the round waits for its coordinator: closing it
    settles them as the round's silence rule says, and the scheduler ends."""
    from models.enums import Role
    from tests.harness import create_account

    await create_account(db, "coordinator@secretariat.example", Role.coordinator)
    coordinator = await user_id_of(db, "coordinator@secretariat.example")
    deadline = datetime.now(UTC) + timedelta(days=14)
    round_id = await seed_round(
        db, deadline=deadline, keys=THREE, created_by=coordinator, silence_means="content"
    )
    scheduler = Scheduler(stack_settings, client=time_skipping_env.client)

    async with WorkerHandle(time_skipping_env.client, db, stack_settings):
        await launch_round(db, scheduler, round_id=round_id, actor=TEST_ACTOR)
        # Finds the running scheduler; a handle from start_workflow is the one that skips time in result().
        handle = await scheduler.start_round(round_id)
        with time_skipping_env.auto_time_skipping_disabled():
            await eventually(lambda: _mail_count(mailbox), lambda count: count == 6)
            interior = next(
                link
                for link in await links_of(db, round_id)
                if link.role == "focal_point" and "ministry-of-interior" in link.email
            )
            await sign_off_task(db, mailbox, interior, Decision.object)
        await time_skipping_env.sleep(timedelta(days=15))
        with time_skipping_env.auto_time_skipping_disabled():
            await eventually(lambda: task_statuses(db, round_id), lambda found: found["overdue"] == 2)
            assert (await round_row(db, round_id)).status == RoundStatus.open
            async with db.write_session() as session:
                await round_endings.close_early(
                    session,
                    round_id=round_id,
                    reason="The committee meets on Monday.",
                    actor=TEST_ACTOR,
                    settings=stack_settings,
                )
            await scheduler.wake(round_id)
        assert await handle.result() == "closed"
        description = await handle.describe()

    assert description.status == WorkflowExecutionStatus.COMPLETED
    closed = await round_row(db, round_id)
    assert closed.status == RoundStatus.closed
    assert closed.close_reason == "coordinator"
    assert closed.close_note == "The committee meets on Monday."
    assert closed.closed_at is not None
    assert await task_statuses(db, round_id) == {"signed_off": 1, "deemed_content": 2}
    async with db.session() as session:
        unsigned = await session.exec(
            select(ReviewTask).where(
                ReviewTask.round_id == round_id, col(ReviewTask.status) == TaskStatus.deemed_content
            )
        )
        assert all(task.completed_at == closed.closed_at for task in unsigned)
    notices = messages_to(mailbox, "coordinator@secretariat.example")
    assert [message.subject.split(":")[0] for message in notices].count("Consultation closed") == 1
    (notice,) = [message for message in notices if message.subject.startswith("Consultation closed")]
    assert "Ministry of Interior" in (notice.text or "")
    assert "The committee meets on Monday." in notice.text
    assert "Deemed content (silence): 2" in notice.text


async def test_a_scheduler_that_older_code_started_is_replaced_and_the_round_goes_on(stack: Stack) -> None:
    round_id = await seed_round(stack.db, deadline=datetime.now(UTC) + timedelta(days=3), keys=THREE)
    async with stack.db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=stack.settings)
    workflow_id = round_workflow_id(stack.settings, round_id)
    old = await stack.client.start_workflow(
        ROUND_WORKFLOW,
        RoundRef(round_id),
        id=workflow_id,
        task_queue=stack.settings.task_queue,
        memo={"scheduler_version": SCHEDULER_VERSION - 1},
    )

    # Temporal's list of running workflows catches up with a start within moments.
    replaced = await eventually(
        lambda: replace_outdated_schedulers(stack.client, stack.settings), lambda count: count == 1
    )

    assert replaced == 1
    first_run = stack.client.get_workflow_handle(workflow_id, run_id=old.result_run_id)
    assert (await first_run.describe()).status == WorkflowExecutionStatus.TERMINATED
    current = await stack.client.get_workflow_handle(workflow_id).describe()
    assert current.run_id != old.result_run_id
    assert (await current.memo())["scheduler_version"] == SCHEDULER_VERSION
    assert await replace_outdated_schedulers(stack.client, stack.settings) == 0
    await eventually(lambda: _mail_count(stack.mailbox), lambda count: count == 6)
    await asyncio.sleep(0.5)
    assert stack.mailbox.count() == 6  # the replacement sent what was due, once

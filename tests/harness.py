"""Helpers the integration tests share: accounts, a restartable worker, a served app, polling."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.worker import Worker

from models.audit import Actor
from models.enums import ActorKind, Role
from models.users import UserCreate
from notifications.mailbox import DevMailbox, MailboxMessage
from notifications.smtp import SmtpSender
from services import users
from services.db import Database
from services.delivery import smtp_config
from services.settings import Settings
from workflows.worker import build_worker

T = TypeVar("T")
TEST_ACTOR = Actor(kind=ActorKind.system, id="test")
SIGNING_SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
"""What a test signing off through `reviews.sign_off` directly passes as its settings: in a round that asks
for no code (seed_round's) the use case reads none of them; they would only write the code's email."""


async def create_account(db: Database, email: str, role: Role) -> dict[str, str]:
    """An account and the Authorization header of its API token."""
    async with db.write_session() as session:
        _user, token = await users.create_user(
            session, data=UserCreate(email=email, role=role), actor=TEST_ACTOR
        )
    return {"Authorization": f"Bearer {token}"}


class WorkerHandle:
    """A real worker on the test's task queue that can be stopped and started again mid-round."""

    def __init__(self, client: Client, db: Database, settings: Settings) -> None:
        self.client = client
        self.db = db
        self.settings = settings
        self._worker: Worker | None = None
        self._sender: SmtpSender | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sender = SmtpSender(smtp_config(self.settings))
        self._worker = build_worker(self.client, db=self.db, sender=self._sender, settings=self.settings)
        self._task = asyncio.create_task(self._worker.run())

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.shutdown()
            assert self._task is not None
            await self._task
            self._worker = None
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    async def __aenter__(self) -> WorkerHandle:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 60, every: float = 0.1
) -> T:
    """Poll until `accept(value)`; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not there after {timeout} s; last value: {value!r}")
        await asyncio.sleep(every)


def messages_to(mailbox: DevMailbox, address: str) -> list[MailboxMessage]:
    return [mailbox.get(entry.key) for entry in mailbox.for_recipient(address)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServedApp:
    """The web app served by uvicorn on a loopback port, in the test's event loop."""

    def __init__(self, app: FastAPI, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(
            # log_config=None: leave the process's logging alone (uvicorn's default config rewires it).
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ServedApp:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        await self._task


def fixture_path(name: str) -> Path:
    return Path(__file__).with_name("fixtures") / name


async def seed_round(
    db: Database,
    *,
    deadline: datetime,
    keys: list[str] | None = None,
    section_numbers: list[str] | None = None,
    registry: bytes | None = None,
    draft: bytes | None = None,
    created_by: int | None = None,
    **options: Any,
) -> int:
    """The fixture registry and draft imported, and a draft round on them (every organisation and section
    by default). `options` are further RoundCreate fields; a round shorter than the procedure's minimum
    (most tests' rounds) says why unless the test gives its own reason or none. It sends no reminders
    unless the test gives a policy: a test counting emails must not find one the calendar put due today
    (a round of a few days has its 1-working-day reminder today on some days of the week). Its sign-off
    asks for no emailed code unless the test says so (the product's default asks for one)."""
    from models.rounds import RoundCreate
    from services import documents, organisations, rounds

    async with db.write_session() as session:
        await organisations.import_csv(
            session,
            content=registry or fixture_path("stakeholders-albania.csv").read_bytes(),
            actor=TEST_ACTOR,
        )
    async with db.write_session() as session:
        document = await documents.create_document(
            session,
            title="Migration governance strategy",
            filename="draft.md",
            content=draft or fixture_path("draft-migration-governance-strategy.md").read_bytes(),
            actor=TEST_ACTOR,
        )
    async with db.write_session() as session:
        created = await rounds.create_round(
            session,
            data=RoundCreate(
                title="Migration strategy, round 1",
                document_version_id=document.versions[0].id,
                deadline=deadline,
                organisation_keys=keys,
                section_numbers=section_numbers,
                **{
                    "minimum_period_reason": "a short round for a test",
                    "reminder_policy": {"working_days_before": []},
                    "sign_off_code_required": False,
                    **options,
                },
            ),
            actor=TEST_ACTOR,
            user_id=created_by,
        )
    return created.id


async def user_id_of(db: Database, email: str) -> int:
    from sqlmodel import select

    from models.users import User

    async with db.session() as session:
        user = (await session.exec(select(User).where(User.email == email))).one()
    assert user.id is not None
    return user.id


def review_token(mailbox: DevMailbox, address: str) -> str:
    """The token of the review link in the (one) invitation the address received."""
    (message,) = messages_to(mailbox, address)
    (token,) = {url.rsplit("/t/", 1)[1] for url in message.links if "/t/" in url}
    return token


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of the (first) form on a page, as a browser would submit it."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token on the page"
    return match.group(1)

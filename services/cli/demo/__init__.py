"""The product's own demo: a small registry, a draft and a round, loaded into an empty database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from importlib import resources

from sqlmodel import func, select

from models.audit import Actor
from models.enums import ActorKind, Role
from models.organisations import Organisation
from models.rounds import ReminderPolicy, RoundCreate
from models.types import utcnow
from models.users import UserCreate
from services import documents, organisations, rounds, users, working_days
from services.db import Database
from services.procedures import DEFAULT_PROCEDURE, get_procedure

DEMO_PASSWORD = "roundtable-demo"  # noqa: S105 - printed to the developer; demo data only
COORDINATOR_EMAIL = "coordinator@roundtable.demo.example"
AUDITOR_EMAIL = "auditor@roundtable.demo.example"
SETUP_ACTOR = Actor(kind=ActorKind.system, id="demo-loader")


@dataclass(frozen=True)
class DemoAccess:
    coordinator_token: str
    auditor_token: str


def _resource(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


async def is_empty(db: Database) -> bool:
    async with db.session() as session:
        return (
            await users.count_users(session) == 0
            and (await session.exec(select(func.count()).select_from(Organisation))).one() == 0
        )


async def load(db: Database) -> int:
    """Create the demo accounts, registry, draft and a draft round; returns the round's id."""
    async with db.write_session() as session:
        coordinator, _token = await users.create_user(
            session,
            data=UserCreate(
                email=COORDINATOR_EMAIL,
                role=Role.coordinator,
                full_name="Demo Coordinator",
                password=DEMO_PASSWORD,
            ),
            actor=SETUP_ACTOR,
        )
    async with db.write_session() as session:
        await users.create_user(
            session,
            data=UserCreate(
                email=AUDITOR_EMAIL, role=Role.auditor, full_name="Demo Auditor", password=DEMO_PASSWORD
            ),
            actor=SETUP_ACTOR,
        )
    actor = Actor(kind=ActorKind.user, id=str(coordinator.id), email=coordinator.email)
    async with db.write_session() as session:
        await organisations.import_csv(session, content=_resource("stakeholders.csv"), actor=actor)
    async with db.write_session() as session:
        document = await documents.create_document(
            session,
            title="",
            filename="digital-public-services-strategy.md",
            content=_resource("draft.md"),
            actor=actor,
        )
    async with db.write_session() as session:
        created = await rounds.create_round(
            session,
            data=RoundCreate(
                title="Digital Public Services Strategy 2027–2031: first consultation round",
                purpose=(
                    "The ministries, agencies and municipalities are asked for their opinion on the draft "
                    "strategy before the ministerial committee adopts it. Ministries sign off for clearance; "
                    "the others are consulted."
                ),
                cover_message=(
                    "Please review the sections assigned to your organisation, comment where the text "
                    "should change and sign off for your organisation by the deadline. Mark as an objection "
                    "any point your organisation cannot accept unless it is resolved."
                ),
                contact_name="Secretariat of the Digital Governance Committee",
                contact_email=COORDINATOR_EMAIL,
                document_version_id=document.versions[0].id,
                deadline=_demo_deadline(),
                reminder_policy=ReminderPolicy(
                    text="The ministerial committee reviews the strategy once every ministry has signed off."
                ),
            ),
            actor=actor,
            user_id=coordinator.id,
        )
    return created.id


def _demo_deadline() -> datetime:
    """17:00 in Tirana, the interministerial minimum of working days from today."""
    today = working_days.local_date(utcnow(), working_days.DEFAULT_TIMEZONE)
    minimum = get_procedure(DEFAULT_PROCEDURE).minimum_working_days
    day = working_days.add_working_days(working_days.DEFAULT_JURISDICTION, today, minimum)
    return working_days.at_local(day, time(17, 0), working_days.DEFAULT_TIMEZONE)


async def issue_tokens(db: Database) -> DemoAccess:
    """Fresh API tokens for the demo accounts (only hashes are stored, so old ones cannot be shown again)."""
    async with db.write_session() as session:
        coordinator = await users.issue_api_token(
            session, email=COORDINATOR_EMAIL, label="roundtable dev", actor=SETUP_ACTOR
        )
    async with db.write_session() as session:
        auditor = await users.issue_api_token(
            session, email=AUDITOR_EMAIL, label="roundtable dev", actor=SETUP_ACTOR
        )
    return DemoAccess(coordinator_token=coordinator, auditor_token=auditor)


async def has_demo_accounts(db: Database) -> bool:
    async with db.session() as session:
        return await users.user_exists(session, email=COORDINATOR_EMAIL) and await users.user_exists(
            session, email=AUDITOR_EMAIL
        )

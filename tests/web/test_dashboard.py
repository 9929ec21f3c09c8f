"""The round dashboard on the console's round page, as a coordinator reads and uses it: progress and its
bars, clearance, a row per organisation (role, status, overdue first, actions that post without a script
and answer next to the row), comments per section, the timeline, the fragment the page refreshes itself
from, and the table's search, filter and pages; and the list of rounds.

Rounds are built through the services (no scheduler: wake-ups are recorded), sign-offs and comments are
made through the focal points' links, and the console is used through its pages as a browser would."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import col, select

from models.documents import Section
from models.enums import Role
from models.extensions import ExtensionCreate
from models.organisations import Organisation
from models.reviews import AccessLink, CommentCreate, SignOffCreate
from models.rounds import ReviewTask, Round, RoundCreate
from models.users import UserCreate
from services import (
    comments,
    escalations,
    extension_requests,
    extensions,
    links,
    reviews,
    round_endings,
    rounds,
    users,
)
from services.db import Database
from services.errors import ServiceUnavailable
from services.links import ClientInfo
from services.settings import Settings
from services.web.app import create_app
from tests.harness import SIGNING_SETTINGS, TEST_ACTOR, csrf_of, seed_round
from workflows.client import Scheduler

ZONE = "Europe/Tirane"
PASSWORD = "correct horse battery staple"
COORDINATOR = "coordinator@secretariat.example"
AUDITOR = "auditor@audit.example"
HTML = {"Accept": "text/html"}
INTERIOR, FINANCE, TIRANE = "ministry-of-interior", "ministry-of-finance", "municipality-tirane"
KEYS = [INTERIOR, FINANCE, TIRANE]
CLIENT = ClientInfo(ip="198.51.100.7", user_agent="test")


class RecordingScheduler(Scheduler):
    """No Temporal here: the console's wake-ups are recorded instead (nothing may depend on them)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.woken: list[int] = []

    async def client(self):  # type: ignore[no-untyped-def]
        raise ServiceUnavailable("no scheduler in this test")

    async def wake(self, round_id: int) -> None:
        self.woken.append(round_id)


@dataclass
class Desk:
    db: Database
    settings: Settings
    http: httpx.AsyncClient

    async def sign_in(self, email: str = COORDINATOR) -> None:
        form = await self.http.get("/console/login")
        response = await self.http.post(
            "/console/login",
            data={"csrf_token": csrf_of(form), "email": email, "password": PASSWORD, "next": ""},
        )
        assert response.status_code == 303, response.text

    async def page(self, path: str, **params: str) -> httpx.Response:
        response = await self.http.get(path, params=params) if params else await self.http.get(path)
        assert response.status_code == 200, response.text
        return response

    async def submit(self, page_path: str, action: str, data: dict[str, str] | None = None) -> httpx.Response:
        page = await self.page(page_path)
        return await self.http.post(action, data={"csrf_token": csrf_of(page), **(data or {})})


@pytest.fixture
async def desk(db: Database, settings: Settings) -> AsyncIterator[Desk]:
    console_settings = settings.model_copy(update={"timezone": ZONE})
    for email, role in ((COORDINATOR, Role.coordinator), (AUDITOR, Role.auditor)):
        async with db.write_session() as session:
            await users.create_user(
                session, data=UserCreate(email=email, role=role, password=PASSWORD), actor=TEST_ACTOR
            )
    app = create_app(console_settings, db=db, scheduler=RecordingScheduler(console_settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    ) as client:
        yield Desk(db=db, settings=console_settings, http=client)


async def launched(desk: Desk, keys: list[str] | None = KEYS, days: int = 7) -> int:
    """A round on the fixture registry and draft, launched (its links issued; nothing delivered)."""
    round_id = await seed_round(desk.db, deadline=datetime.now(UTC) + timedelta(days=days), keys=keys)
    async with desk.db.write_session() as session:
        assert await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=desk.settings)
    return round_id


async def token_of(desk: Desk, round_id: int, key: str) -> str:
    """A working token of the organisation's focal point, as their invitation would carry it."""
    async with desk.db.session() as session:
        link_id = (
            await session.exec(
                select(AccessLink.id)
                .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
                .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
                .where(
                    AccessLink.round_id == round_id, Organisation.key == key, AccessLink.role == "focal_point"
                )
            )
        ).one()
    async with desk.db.write_session() as session:
        return await links.reissue_token(session, link_id=link_id, actor=TEST_ACTOR)


async def sign_off(
    desk: Desk, round_id: int, key: str, decision: str = "approve", statement: str = ""
) -> None:
    token = await token_of(desk, round_id, key)
    async with desk.db.write_session() as session:
        await reviews.sign_off(
            session,
            token=token,
            data=SignOffCreate(
                decision=decision,  # type: ignore[arg-type]
                statement=statement,
                signer_name="Arben Hoxha",
                signer_title="Director",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=CLIENT,
            settings=SIGNING_SETTINGS,
        )


async def comment(desk: Desk, round_id: int, key: str, section: str, weight: str, body: str) -> None:
    token = await token_of(desk, round_id, key)
    async with desk.db.session() as session:
        round_ = await session.get(Round, round_id)
        assert round_ is not None
        section_id = (
            await session.exec(
                select(Section.id).where(
                    Section.document_version_id == round_.document_version_id, Section.number == section
                )
            )
        ).one()
    async with desk.db.write_session() as session:
        await comments.add_comment(
            session,
            token=token,
            data=CommentCreate(
                section_id=section_id or 0,
                body=body,
                weight=weight,  # type: ignore[arg-type]
                submission_id=uuid.uuid4().hex,
            ),
            client=CLIENT,
        )


def text_of(fragment: str) -> str:
    """What a person reads: the tags taken out, entities read, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def row(page: httpx.Response, key: str) -> str:
    """The organisation's row group of the table (its line, its notices and its actions): up to the
    next organisation's, or the end of the table."""
    start = page.text.find(f'<tbody id="task-{key}"')
    assert start >= 0, f"no row for {key}"
    rest = page.text[start + 1 :]
    ends = [rest.find(mark) for mark in ('<tbody id="task-', 'id="comments-by-section"') if mark in rest]
    return page.text[start : start + 1 + min(ends)] if ends else page.text[start:]


def row_order(page: httpx.Response) -> list[str]:
    return re.findall(r'<tbody id="task-([^"]+)"', page.text)


def bars(page: httpx.Response) -> dict[str, tuple[str, str]]:
    """Status -> (the bar's width, the numbers read beside it)."""
    found = {}
    for status, item in re.findall(r'<li class="status-bar status-bar-(\w+)">(.*?)</li>', page.text, re.S):
        width = re.search(r'style="width: (\d+)%"', item)
        assert width
        count = re.search(r'<span class="status-bar-count">(.*?)</span>', item, re.S)
        assert count
        found[status] = (width.group(1), text_of(count.group(1)))
    return found


def top_of(page: httpx.Response) -> str:
    """The page above the dashboard: where a round's own notices go."""
    return page.text.split('id="dashboard"', 1)[0].split('<main class="wrap" id="main">', 1)[1]


# ----------------------------------------------------------------------------------------- progress


async def test_the_counts_and_bars_follow_the_sign_offs_and_clearance_names_what_blocks(desk: Desk) -> None:
    round_id = await launched(desk)
    await desk.sign_in()
    path = f"/console/rounds/{round_id}"

    before = await desk.page(path)
    assert bars(before) == {"pending": ("100", "3 of 3 (100%)")}
    clearance = text_of(before.text.split('id="clearance"', 1)[1].split("</div>", 1)[0])
    assert "Not cleared yet." in clearance
    assert "Ministry of Finance has not approved yet (pending)." in clearance
    assert "Ministry of Interior has not approved yet (pending)." in clearance
    assert "Municipality" not in clearance  # consulted, not an approver
    assert "0 of 2 approvers approved." in clearance

    await sign_off(desk, round_id, INTERIOR)
    await sign_off(desk, round_id, TIRANE)
    after = await desk.page(path)
    assert bars(after) == {"pending": ("33", "1 of 3 (33%)"), "signed_off": ("67", "2 of 3 (67%)")}
    clearance = text_of(after.text.split('id="clearance"', 1)[1].split("</div>", 1)[0])
    assert "Ministry of Interior" not in clearance
    assert "Ministry of Finance has not approved yet (pending)." in clearance
    assert "1 of 2 approvers approved." in clearance

    await sign_off(desk, round_id, FINANCE)
    cleared = await desk.page(path)
    assert bars(cleared) == {"signed_off": ("100", "3 of 3 (100%)")}
    assert "Cleared." in text_of(cleared.text.split('id="clearance"', 1)[1].split("</div>", 1)[0])
    # The period, the deadline and what is left of it, in the round's time zone.
    progress = text_of(cleared.text.split('id="progress"', 1)[1].split("</section>", 1)[0])
    assert "Period" in progress
    assert "working days" in progress
    assert "Working days left" in progress
    assert "(Europe/Tirane)" in progress


async def test_each_row_says_the_role_status_comments_and_decision_of_its_organisation(desk: Desk) -> None:
    round_id = await launched(desk)
    await comment(desk, round_id, INTERIOR, "4", "objection", "The quota is too low.")
    await comment(desk, round_id, INTERIOR, "4", "proposal", "Add the unions.")
    await comment(desk, round_id, TIRANE, "Annex 1", "remark", "A typo in the table.")
    await sign_off(desk, round_id, TIRANE, decision="approve_with_comments")
    await desk.sign_in()
    page = await desk.page(f"/console/rounds/{round_id}")

    interior = text_of(row(page, INTERIOR).split("</tr>", 1)[0])
    assert "Ministry of Interior" in interior
    assert "approver" in interior
    assert "commenting" in interior
    assert "2 1 objection" in interior  # two comments, one of them an objection
    tirane = text_of(row(page, TIRANE).split("</tr>", 1)[0])
    assert "consulted" in tirane
    assert "signed off" in tirane
    assert "Approve with comments" in tirane
    # Comments per section, by weight: a table a screen reader reads, with the bars beside it.
    chart = page.text.split('id="comments-by-section"', 1)[1].split("</section>", 1)[0]
    lines = {
        text_of(cells[0]): [text_of(cell) for cell in cells[1:5]]
        for cells in (
            re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", line, re.S)
            for line in re.findall(r"<tr>(.*?)</tr>", chart.split("<tbody>", 1)[1], re.S)
        )
    }
    section_four = next(value for name, value in lines.items() if name.startswith("4."))
    assert section_four == ["1", "1", "0", "2"]
    annex = next(value for name, value in lines.items() if name.startswith("Annex 1"))
    assert annex == ["0", "0", "1", "1"]
    assert all(
        value == ["0", "0", "0", "0"]
        for name, value in lines.items()
        if not name.startswith(("4.", "Annex 1"))
    )
    assert 'class="segment segment-objection" style="width: 50.0%"' in chart
    assert 'aria-hidden="true"' in chart


async def test_overdue_organisations_come_first_then_by_status(desk: Desk) -> None:
    round_id = await launched(desk, days=3)
    async with desk.db.session() as session:
        round_ = await session.get(Round, round_id)
        assert round_ is not None
        deadline = round_.deadline
    async with desk.db.write_session() as session:
        await extensions.extend(
            session,
            round_id=round_id,
            data=ExtensionCreate(
                deadline=deadline + timedelta(days=5),
                reason="The ministry asked for time.",
                organisation_keys=[FINANCE, INTERIOR],
            ),
            actor=TEST_ACTOR,
            settings=desk.settings,
        )
    await sign_off(desk, round_id, INTERIOR)
    async with desk.db.write_session() as session:
        escalated = await escalations.escalate_overdue(
            session, round_id=round_id, now=deadline + timedelta(hours=1), settings=desk.settings
        )
    assert escalated == 1  # Tirana, whose deadline was not moved
    await desk.sign_in()
    page = await desk.page(f"/console/rounds/{round_id}")
    assert row_order(page) == [TIRANE, FINANCE, INTERIOR]  # overdue, still pending, signed off
    tirane = row(page, TIRANE)
    assert "task-late" in page.text.split(f'id="task-{TIRANE}"', 1)[1].split(">", 1)[0]
    assert "Past its deadline" in text_of(tirane)
    assert "escalated" in text_of(tirane.split("</tr>", 1)[0])
    assert bars(page)["overdue"] == ("33", "1 of 3 (33%)")


# ---------------------------------------------------------------------------------------- timeline


async def test_the_timeline_tells_the_rounds_events_newest_first_with_the_organisations_names(
    desk: Desk,
) -> None:
    round_id = await launched(desk)
    await comment(desk, round_id, INTERIOR, "4", "objection", "The quota is too low.")
    await sign_off(desk, round_id, TIRANE)
    await desk.sign_in()
    page = await desk.page(f"/console/rounds/{round_id}")
    timeline = page.text.split('id="timeline"', 1)[1].split("</section>", 1)[0]
    sentences = [
        text_of(item) for item in re.findall(r'<span class="timeline-sentence">(.*?)</span>', timeline, re.S)
    ]
    title = f"#{round_id} “Migration strategy, round 1”"
    signed = (
        "Municipality of Tiranë (sporteli.migracionit@tirane.bashki.example) signed off round "
        f"{title}: approve. Signed by Arben Hoxha, Director. "
        "Signed with the review link alone (no code asked)."
    )
    commented = (
        "Ministry of Interior (migration.fp@ministry-of-interior.gov.example) commented on section 4 in "
        f"round {title} (general, objection)."
    )
    assert signed in sentences
    assert commented in sentences
    assert sentences.index(signed) < sentences.index(commented)  # newest first
    launched_at = next(index for index, sentence in enumerate(sentences) if "launched round" in sentence)
    assert launched_at > sentences.index(commented)
    assert "(Europe/Tirane)" in text_of(timeline)  # each event's time, in the round's zone
    assert not [sentence for sentence in sentences if "email" in sentence and "was delivered" in sentence]


# ---------------------------------------------------------------------------------------- actions


async def test_an_action_on_a_row_posts_without_a_script_and_its_result_is_shown_in_that_row(
    desk: Desk,
) -> None:
    round_id = await launched(desk)
    await desk.sign_in()
    path = f"/console/rounds/{round_id}"
    first = await desk.page(path)
    actions = row(first, TIRANE)
    assert f'<details class="task-actions" id="actions-{TIRANE}">' in actions
    for action in ("resend", "contacts", "withdraw"):
        assert f'action="/console/rounds/{round_id}/tasks/{TIRANE}/{action}"' in actions
    assert f'action="/console/rounds/{round_id}/extend"' in actions

    resent = await desk.submit(path, f"{path}/tasks/{TIRANE}/resend")
    assert resent.status_code == 303, resent.text
    location = resent.headers["location"]
    assert location == f"{path}?done=resent&task={TIRANE}#task-{TIRANE}"
    shown = await desk.page(location.split("#")[0])
    assert "Its links are being sent again." in row(shown, TIRANE)
    assert 'role="status"' in row(shown, TIRANE)
    assert "Its links are being sent again." not in top_of(shown)
    assert "Its links are being sent again." not in row(shown, INTERIOR)

    # A refused form: the message at the top (where the browser is) with a link to the row, and again
    # in the row, its actions open.
    refused = await desk.submit(path, f"{path}/tasks/{INTERIOR}/withdraw", {"reason": ""})
    assert refused.status_code == 422
    assert f'href="#task-{INTERIOR}"' in top_of(refused)
    assert "Not saved." in top_of(refused)
    interior = row(refused, INTERIOR)
    assert "Not saved." in interior
    assert f'<details class="task-actions" id="actions-{INTERIOR}" open>' in interior
    assert "Not saved." not in row(refused, TIRANE)

    # One organisation's extension: told in its row; the whole round's: beside the round's forms.
    later = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=12)).strftime("%Y-%m-%dT17:00")
    extended = await desk.submit(
        path,
        f"{path}/extend",
        {"deadline": later, "reason": "The council meets late", "organisation_keys": TIRANE},
    )
    assert extended.headers["location"] == f"{path}?done=extended&task={TIRANE}#task-{TIRANE}"
    shown = await desk.page(extended.headers["location"].split("#")[0])
    assert "The deadline was extended" in row(shown, TIRANE)
    everyone = await desk.submit(
        path,
        f"{path}/extend",
        {
            "deadline": (datetime.now(ZoneInfo(ZONE)) + timedelta(days=14)).strftime("%Y-%m-%dT17:00"),
            "reason": "All",
        },
    )
    assert everyone.headers["location"] == f"{path}?done=extended#round-actions"
    shown = await desk.page(everyone.headers["location"].split("#")[0])
    round_actions = shown.text.split('id="round-actions"', 1)[1].split("</section>", 1)[0]
    assert "The deadline was extended" in round_actions
    assert "The deadline was extended" not in top_of(shown)

    # Adding an organisation: told in its new row.
    added = await desk.submit(path, f"{path}/tasks", {"organisation_key": "ministry-of-justice"})
    assert added.headers["location"] == f"{path}?done=added&task=ministry-of-justice#task-ministry-of-justice"
    shown = await desk.page(added.headers["location"].split("#")[0])
    assert "The organisation was added" in row(shown, "ministry-of-justice")

    withdrawn = await desk.submit(path, f"{path}/tasks/{INTERIOR}/withdraw", {"reason": "Not concerned"})
    assert withdrawn.status_code == 303
    shown = await desk.page(withdrawn.headers["location"].split("#")[0])
    assert "The organisation was withdrawn" in row(shown, INTERIOR)
    assert "withdrawn" in text_of(row(shown, INTERIOR).split("</tr>", 1)[0])

    # Closing is the round's own: told at the top; the actions are gone.
    closed = await desk.submit(path, f"{path}/close", {"reason": "The committee decided."})
    assert closed.headers["location"] == f"{path}?done=closed"
    final = await desk.page(closed.headers["location"])
    assert "The round is closed." in top_of(final)
    assert "task-actions" not in final.text


async def test_a_request_for_more_time_is_answered_in_its_organisations_row(desk: Desk) -> None:
    round_id = await launched(desk)
    token = await token_of(desk, round_id, TIRANE)
    wanted = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=20)).strftime("%Y-%m-%dT17:00")
    async with desk.db.write_session() as session:
        request = await extension_requests.ask(
            session,
            token=token,
            wanted_local=wanted,
            reason="The council meets on the 20th.",
            submission_id=uuid.uuid4().hex,
            client=CLIENT,
            settings=desk.settings,
        )
    await desk.sign_in()
    path = f"/console/rounds/{round_id}"
    page = await desk.page(path)
    tirane = row(page, TIRANE)
    assert "Asks for more time, until" in text_of(tirane)
    assert f'action="/console/rounds/{round_id}/extension-requests/{request.id}/grant"' in tirane
    assert f'href="#request-{request.id}"' in page.text  # from the requests' list to the row

    no_reason = await desk.submit(path, f"{path}/extension-requests/{request.id}/refuse", {"note": ""})
    assert no_reason.status_code == 422
    assert "Not saved." in row(no_reason, TIRANE)
    assert f'href="#task-{TIRANE}"' in top_of(no_reason)

    granted = await desk.submit(path, f"{path}/extension-requests/{request.id}/grant", {"note": "Fine."})
    assert granted.headers["location"] == f"{path}?done=granted&task={TIRANE}#task-{TIRANE}"
    shown = await desk.page(granted.headers["location"].split("#")[0])
    assert "The request was granted" in row(shown, TIRANE)
    assert "Asks for more time" not in text_of(row(shown, TIRANE))


async def test_an_auditor_sees_the_dashboard_without_its_forms(desk: Desk) -> None:
    round_id = await launched(desk)
    await desk.sign_in(AUDITOR)
    page = await desk.page(f"/console/rounds/{round_id}")
    assert sorted(row_order(page)) == sorted(KEYS)
    assert "task-actions" not in page.text
    assert "Change the round" not in page.text
    assert "approver" in text_of(row(page, INTERIOR))


# ------------------------------------------------------------------------------- refresh, fragment


async def test_the_fragment_is_the_dashboard_alone_and_says_to_refresh_only_while_open(desk: Desk) -> None:
    round_id = await launched(desk)
    path = f"/console/rounds/{round_id}"
    signed_out = await desk.http.get(f"{path}/dashboard")
    assert signed_out.status_code == 303
    await desk.sign_in()
    page = await desk.page(path)
    assert f'data-refresh-url="{path}/dashboard"' in page.text
    assert 'src="/static/dashboard.js"' in page.text
    assert f'href="{path}#dashboard"' in page.text  # the Refresh link, for a page without the script

    fragment = await desk.page(f"{path}/dashboard")
    assert fragment.headers["cache-control"] == "no-store"
    assert fragment.text.lstrip().startswith('<div class="dashboard" id="dashboard"')
    assert "<html" not in fragment.text
    assert "Sign-off register" not in fragment.text
    assert row_order(fragment) == row_order(page)
    assert bars(fragment) == bars(page)
    assert 'name="csrf_token"' in fragment.text  # its forms post as the page's do
    filtered = await desk.page(f"{path}/dashboard", q="tirane")
    assert row_order(filtered) == [TIRANE]
    assert f'data-refresh-url="{path}/dashboard?q=tirane"' in filtered.text

    script = await desk.page("/static/dashboard.js")
    assert "refreshUrl" in script.text

    async with desk.db.write_session() as session:
        await round_endings.close_early(
            session, round_id=round_id, reason="Decided.", actor=TEST_ACTOR, settings=desk.settings
        )
    closed = await desk.page(f"{path}/dashboard")
    assert "data-refresh-url" not in closed.text
    assert "data-refresh-url" not in (await desk.page(path)).text


# ------------------------------------------------------------------------------- search and pages


async def test_the_table_is_searched_filtered_and_paged_in_the_address(desk: Desk) -> None:
    round_id = await launched(desk, keys=None)  # every organisation of the registry: 88
    await sign_off(desk, round_id, INTERIOR)
    await desk.sign_in()
    path = f"/console/rounds/{round_id}"

    first = await desk.page(path)
    assert len(row_order(first)) == 25
    assert "Page 1 of 4" in text_of(first.text)
    assert f'href="{path}?page=2#organisations"' in first.text
    last = await desk.page(path, page="4")
    assert len(row_order(last)) == 88 - 75
    assert set(row_order(first)).isdisjoint(row_order(last))
    beyond = await desk.page(path, page="99")
    assert "Page 4 of 4" in text_of(beyond.text)

    # Searched without accents ("tirane" finds "Tiranë"), and by a contact's address.
    assert row_order(await desk.page(path, q="tirane")) == [TIRANE]
    assert row_order(await desk.page(path, q="migration.fp@ministry-of-finance")) == [FINANCE]
    assert row_order(await desk.page(path, q="MUNICIPALITY   Tiranë")) == [TIRANE]
    nothing = await desk.page(path, q="atlantis")
    assert row_order(nothing) == []
    assert "No organisation of the round matches." in nothing.text
    signed = await desk.page(path, status="signed_off")
    assert row_order(signed) == [INTERIOR]
    assert "(1 of 88)" in text_of(signed.text)
    assert '<option value="signed_off" selected>' in signed.text
    ministries = await desk.page(path, q="ministry", status="pending")
    assert INTERIOR not in row_order(ministries)
    # "ministry" finds the ministries by kind too: the State Minister for Diaspora is one.
    assert "state-minister-for-diaspora" in row_order(ministries)
    assert [key for key in row_order(ministries) if not key.startswith(("ministry", "state-minister"))] == []
    # The status bars filter the table.
    assert f'href="{path}?status=signed_off#organisations"' in first.text

    for params, words in (
        ({"status": "spaceship"}, "is not a status of an organisation"),
        ({"page": "x"}, "is not a page number"),
        ({"page": "0"}, "is not a page number"),
        ({"page": "²"}, "is not a page number"),
    ):
        refused = await desk.http.get(path, params=params)
        assert refused.status_code == 422, (params, refused.status_code)
        assert words in refused.text, params
    assert (await desk.http.get(path, params={"q": "x" * 201})).status_code == 422

    # An action on a row of a later page comes back to that page, with its notice.
    key = next(key for key in reversed(row_order(last)) if key != INTERIOR)  # the signed one is last
    resent = await desk.submit(path, f"{path}/tasks/{key}/resend")
    assert resent.status_code == 303, resent.text
    shown = await desk.page(resent.headers["location"].split("#")[0])
    assert "Page 4 of 4" in text_of(shown.text)
    assert "Its links are being sent again." in row(shown, key)


# ------------------------------------------------------------------------------------ rounds list


async def test_the_rounds_list_counts_roles_and_pages_when_long(desk: Desk) -> None:
    round_id = await launched(desk)
    await sign_off(desk, round_id, INTERIOR)
    await sign_off(desk, round_id, TIRANE)
    async with desk.db.session() as session:
        round_ = await session.get(Round, round_id)
        assert round_ is not None
        version_id = round_.document_version_id
    for number in range(26):
        async with desk.db.write_session() as session:
            await rounds.create_round(
                session,
                data=RoundCreate(
                    title=f"Spare round {number:02d}",
                    document_version_id=version_id,
                    deadline=datetime.now(UTC) + timedelta(days=30),
                    organisation_keys=[FINANCE],
                ),
                actor=TEST_ACTOR,
                user_id=None,
            )
    await desk.sign_in()
    first = await desk.page("/console")
    assert "Page 1 of 2" in text_of(first.text)
    assert "Spare round 25" in first.text
    assert "Migration strategy, round 1" not in first.text  # the oldest, on the second page
    second = await desk.page("/console", page="2")
    line = next(
        text_of(found)
        for found in re.findall(r"<tr>(.*?)</tr>", second.text, re.S)
        if "Migration strategy, round 1" in found
    )
    assert "2 approve, 1 consulted" in line
    assert "1 / 2" in line  # approvers that approved
    assert "2 / 3" in line  # signed off
    searched = await desk.page("/console", q="migration")
    assert "Migration strategy, round 1" in searched.text
    assert "Spare round" not in searched.text
    by_number = await desk.page("/console", q=f"#{round_id}")
    assert "Migration strategy, round 1" in by_number.text
    open_only = await desk.page("/console", status="open")
    assert "Migration strategy, round 1" in open_only.text
    assert "Spare round" not in open_only.text
    refused = await desk.http.get("/console", params={"status": "spaceship"})
    assert refused.status_code == 422
    assert "is not a status of a round" in refused.text

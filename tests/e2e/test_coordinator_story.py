"""The coordinator's desk in a real browser, on real parts, from an empty registry to the report.

A coordinator signs in, imports the shared fixture registry (preview, then confirm) and the Word draft,
runs the new-round wizard for 20 organisations (ministries approve, others are consulted, two overrides;
municipalities and an observer get only some sections), and launches. The scheduler (a real Temporal dev
server and worker) sends the invitations to a real SMTP sink; the test reads them in the dev mailbox and
opens focal points' review links from there: comments of each weight, an objection and an objecting
sign-off among them. The dashboard's counts follow. The coordinator answers the comments (one answer for
several ticked comments, a saved answer text created and then picked), publishes the answers (the
feedback letters arrive in the mailbox), and downloads the comment matrix (Excel and Word, read cell by
cell) and the consultation report (PDF, its figures read back). Every console page and the review page
in both languages are saved as screenshots under tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime as dt
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from temporalio.testing import WorkflowEnvironment

from notifications.mailbox import DevMailbox
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.e2e.helpers import (
    COORDINATOR,
    PageProblems,
    axe_problems,
    browser_context,
    create_login,
    open_details,
    phone_problems,
    save_screenshot,
    shared_fixture,
    sign_in,
)
from tests.harness import ServedApp, WorkerHandle, eventually, free_port
from workflows.client import Scheduler

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

ZONE = "Europe/Tirane"
TITLE = "National Strategy on Migration Governance: inter-institutional consultation"
DRAFT_TITLE = "National Strategy on Migration Governance 2026–2030"

MINISTRIES = [
    "ministry-of-interior",
    "ministry-for-europe-and-foreign-affairs",
    "ministry-of-finance",
    "ministry-of-health-and-social-protection",
    "ministry-of-education-and-sport",
    "ministry-of-justice",
]
AGENCIES = [
    "national-agency-for-employment-and-skill",
    "institute-of-statistics",
    "state-police-border-and-migration-depart",
    "office-of-the-national-anti-trafficking-",
    "people-s-advocate",
]
MUNICIPALITIES = [
    "municipality-tirane",
    "municipality-durres",
    "municipality-shkoder",
    "municipality-korce",
    "municipality-vlore",
    "municipality-elbasan",
]
OTHERS = [
    "albanian-association-of-municipalities",
    "returnee-support-network-civil-society",
    "iom-albania-observer",
]
CONSULTED = MINISTRIES + AGENCIES + MUNICIPALITIES + OTHERS
# Ministries approve and the others are consulted unless the coordinator says otherwise: two overrides.
OVERRIDES = {
    "ministry-of-education-and-sport": "consulted",
    "state-police-border-and-migration-depart": "approver",
}
ROLES = {key: OVERRIDES.get(key, "approver" if key in MINISTRIES else "consulted") for key in CONSULTED}
APPROVERS = [key for key in CONSULTED if ROLES[key] == "approver"]
# Some organisations review only some sections; the others every section.
MUNICIPAL_SECTIONS = ["1", "4", "8"]
ASSIGNED = dict.fromkeys(MUNICIPALITIES, MUNICIPAL_SECTIONS) | {"iom-albania-observer": ["1", "7", "8"]}
EVERY_SECTION = [*map(str, range(1, 13)), "Annex 1"]

FORMULA = '=HYPERLINK("http://evil.example","click") is how a spreadsheet would read this comment.'


@dataclass
class Live:
    url: str
    settings: Settings
    db: Database
    mailbox: DevMailbox
    registry: list[dict[str, str]]
    api: dict[str, str]
    """The coordinator's API token, as an Authorization header."""
    started: float = field(default_factory=time.monotonic)
    laps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What the pages' checks found (axe-core, the phone's width)."""

    def lap(self, what: str) -> None:
        self.laps.append(f"{time.monotonic() - self.started:6.1f} s  {what}")

    def row(self, key: str) -> dict[str, str]:
        return next(row for row in self.registry if row["key"] == key)


@pytest.fixture
async def live(
    stack_settings: Settings, db: Database, temporal_env: WorkflowEnvironment, mailbox: DevMailbox
) -> AsyncIterator[Live]:
    registry_file = shared_fixture("stakeholders-albania.csv")
    shared_fixture("draft-migration-governance-strategy.docx")
    port = free_port()
    settings = stack_settings.model_copy(
        update={"public_base_url": f"http://127.0.0.1:{port}", "timezone": ZONE}
    )
    api = await create_login(db, COORDINATOR)
    app = create_app(settings, db=db, scheduler=Scheduler(settings, client=temporal_env.client))
    registry = list(csv.DictReader(io.StringIO(registry_file.read_text(encoding="utf-8"))))
    async with WorkerHandle(temporal_env.client, db, settings), ServedApp(app, port=port) as server:
        live = Live(url=server.url, settings=settings, db=db, mailbox=mailbox, registry=registry, api=api)
        yield live
        print("\n" + "\n".join(live.laps))


def contacts_of(live: Live, keys: list[str]) -> list[str]:
    return [row["focal_point_email"] for row in live.registry if row["key"] in keys] + [
        row["alternate_email"] for row in live.registry if row["key"] in keys and row["alternate_email"]
    ]


async def shot(page: Page, live: Live, name: str, *, check: bool = True) -> None:
    """Save the page's screenshot, and check it as every page is checked: axe-core finds no serious or
    critical violation, and at 390 px it does not scroll sideways (problems are told at the end). The
    pages that test_accessibility checks as well, and those whose template the story has checked, are
    only saved (`check=False`): axe-core takes seconds on a big page, 14 s on the wizard's matrix."""
    if check:
        live.problems += await axe_problems(page, name) + await phone_problems(page, name)
    await save_screenshot(page, name)


# ------------------------------------------------------------------------------------------ stages


async def import_registry(page: Page, live: Live) -> None:
    """Upload the shared registry: the preview says what would happen and saves nothing; confirming
    imports all 88."""
    await page.goto(f"{live.url}/console/organisations")
    await shot(page, live, "console-organisations-empty")
    await open_details(page.locator("details:has(input[type=file])"))
    await page.locator("input[type=file][name=file]").set_input_files(
        str(shared_fixture("stakeholders-albania.csv"))
    )
    await page.get_by_role("button", name="Preview the import").click()
    await expect(page.get_by_role("heading", name="Check the import")).to_be_visible()
    await expect(page.locator(".cards")).to_contain_text("88")
    await expect(page.locator("#created")).to_contain_text("ministry-of-interior")
    await shot(page, live, "console-registry-import-preview")
    await page.get_by_role("button", name="Confirm the import").click()
    await expect(page.get_by_role("status").first).to_contain_text("88")
    await expect(page.locator("main")).to_contain_text("Ministry of Interior")
    await shot(page, live, "console-organisations", check=False)


async def upload_draft(page: Page, live: Live) -> None:
    await page.goto(f"{live.url}/console/documents")
    await open_details(page.locator("details:has(input[type=file])"))
    form = page.locator("form[action='/console/documents']")
    await form.locator("input[name=title]").fill(DRAFT_TITLE)
    await form.locator("input[type=file]").set_input_files(
        str(shared_fixture("draft-migration-governance-strategy.docx"))
    )
    await form.get_by_role("button", name="Upload draft").click()
    await expect(page.get_by_role("status").first).to_be_visible()
    document = page.locator("section.document").first
    await expect(document.locator("h2")).to_have_text(DRAFT_TITLE)
    await expect(document).to_contain_text("13 sections")
    await shot(page, live, "console-documents", check=False)


@dataclass
class Said:
    """A comment a focal point makes: on a section (by number) or one of its paragraphs."""

    section: str
    paragraph: str | None
    kind: str
    weight: str
    body: str
    proposed_wording: str = ""


@dataclass
class Review:
    key: str
    said: list[Said]
    decision: str | None
    statement: str = ""
    signer: tuple[str, str] = ("Arta Dervishi", "Migration focal point")


REVIEWS = [
    Review(
        "ministry-of-interior",
        [
            Said(
                "4",
                "4.2",
                "substantive",
                "objection",
                "The shortage list cannot be set without the regional employment offices.",
                "…agreed with employers' organisations, trade unions and regional employment offices.",
            )
        ],
        "object",
        "The Ministry objects to 4.2 until the shortage list is agreed with the regional offices.",
        ("Arben Hoxha", "Director of Migration Policy"),
    ),
    Review(
        "ministry-of-finance",
        [
            Said("1", None, "general", "remark", FORMULA),
            Said("4", "4.1", "substantive", "proposal", "Cost the labour-migration measures in the plan."),
        ],
        "approve_with_comments",
        "Approved, subject to our comments on sections 1 and 4.",
    ),
    Review(
        "municipality-tirane",
        [Said("8", None, "substantive", "proposal", "Municipal one-stop shops should receive returnees.")],
        "approve_with_comments",
    ),
    Review("state-police-border-and-migration-depart", [], "approve"),
    Review(
        "iom-albania-observer",
        [Said("7", None, "editorial", "remark", "Use the Palermo Protocol's terms.")],
        None,
    ),
]


def section_on_page(page: Page, number: str):  # type: ignore[no-untyped-def]
    return page.locator("section.section").filter(
        has=page.locator("h2", has_text=re.compile(rf"^\s*{re.escape(number)}\. "))
    )


async def open_link_from_mailbox(context: BrowserContext, live: Live, email: str) -> Page:
    """The focal point's own browser: the dev mailbox, their invitation's review link, clicked."""
    page = await context.new_page()
    await page.goto(f"{live.url}/dev/mail")
    invitation = page.locator("table.mail-list tbody tr").filter(has_text=email)
    await expect(invitation).to_have_count(1)
    await invitation.locator("a.review-link").first.click()
    await expect(page.locator(".review-head")).to_be_visible()
    # Once the page is shown, the token leaves the address bar (and the history).
    await page.wait_for_url(re.compile(r"/links/lost$"))
    return page


async def review_in_browser(browser: Browser, live: Live, review: Review, problems: PageProblems) -> None:
    row = live.row(review.key)
    async with browser_context(browser) as context:
        page = problems.watch(await open_link_from_mailbox(context, live, row["focal_point_email"]))
        # The organisation works in Albanian: the page opens in Albanian; the switch makes it English.
        await expect(page.locator("html")).to_have_attribute("lang", row["language"])
        if review.key == "ministry-of-interior":
            await shot(page, live, "review-sq", check=False)
        if row["language"] != "en":
            await page.locator(".language-switch").get_by_role("link", name="English").click()
            await expect(page.locator("html")).to_have_attribute("lang", "en")
        if review.key == "ministry-of-interior":
            await shot(page, live, "review-en", check=False)
        await expect(page.locator(".facts")).to_contain_text(row["name_en"])
        expected_sections = ASSIGNED.get(review.key, EVERY_SECTION)
        await expect(page.locator("section.section:not(.signoff)")).to_have_count(len(expected_sections))
        for said in review.said:
            section = section_on_page(page, said.section)
            add = section.locator("details.add-comment")
            await open_details(add)
            if said.paragraph:
                await add.locator("select[name=paragraph]").select_option(said.paragraph)
            await add.locator("select[name=kind]").select_option(said.kind)
            await add.locator("select[name=weight]").select_option(said.weight)
            await add.locator("textarea[name=body]").fill(said.body)
            if said.proposed_wording:
                await add.locator("textarea[name=proposed_wording]").fill(said.proposed_wording)
            await add.get_by_role("button", name="Save comment").click()
            await expect(page.get_by_role("status")).to_have_text("Your comment was saved.")
            await expect(page.locator("article.comment").last).to_contain_text(said.body[:40])
        if review.decision:
            form = page.locator("#sign-off-form")
            await form.locator(f"input[name=decision][value={review.decision}]").check()
            if review.statement:
                await form.locator("textarea[name=statement]").fill(review.statement)
            await form.locator("input[name=signer_name]").fill(review.signer[0])
            await form.locator("input[name=signer_title]").fill(review.signer[1])
            await form.locator("input[name=authorised]").check()
            await form.get_by_role("button", name="Sign off for the organisation").click()
            # The wizard's round asks for the code emailed to the signer: read in their mailbox, entered.
            await page.wait_for_url(re.compile(r"done=code-sent"))
            code = await eventually(
                lambda: _async(emailed_code(live.mailbox, row["focal_point_email"])),
                lambda found: found is not None,
                timeout=30,
            )
            await page.locator("input[name=code]").fill(code)
            await page.get_by_role("button", name="Confirm the sign-off").click()
            await page.wait_for_url(re.compile(r"done=signed"))
            await expect(page.locator("#receipt")).to_contain_text(f"{review.signer[0]}, {review.signer[1]}")
            if review.key == "ministry-of-interior":
                await shot(page, live, "review-en-receipt")


def emailed_code(mailbox: DevMailbox, address: str) -> str | None:
    """The code in the newest sign-off code email to the address, if it has come."""
    for entry in mailbox.for_recipient(address):
        found = re.search(r"^ {4}(\d{6})$", mailbox.get(entry.key).text or "", re.MULTILINE)
        if found:
            return found.group(1)
    return None


async def _async(value: str | None) -> str | None:
    return value


async def status_counts(page: Page) -> dict[str, int]:
    """The dashboard's organisations by status, as its bars show them."""
    pairs = await page.evaluate(
        """() => [...document.querySelectorAll('#progress li.status-bar')].map(item => [
            [...item.classList].find(name => name.startsWith('status-bar-')).slice('status-bar-'.length),
            item.querySelector('.status-bar-count').textContent])"""
    )
    return {status: int(re.match(r"\s*(\d+)", text).group(1)) for status, text in pairs}  # type: ignore[union-attr]


async def expect_dashboard(
    page: Page, url: str, statuses: dict[str, int], *, approved: int, approvers: int, objections: int
) -> None:
    """Reload the dashboard until its counts are these (the scheduler sends the invitations meanwhile)."""
    found: dict[str, int] = {}
    for _ in range(100):
        await page.goto(url)
        found = await status_counts(page)
        if found == statuses:
            break
        await asyncio.sleep(0.1)
    assert found == statuses
    clearance = page.locator("#clearance")
    await expect(clearance).to_contain_text(f"{approved} of {approvers} approvers approved.")
    await expect(clearance).to_contain_text(f"Objections: {objections} not answered")


async def wait_for_mail(live: Live, count: int) -> None:
    await eventually(lambda: _count(live.mailbox), lambda seen: seen >= count, timeout=60, every=0.1)


async def _count(mailbox: DevMailbox) -> int:
    return mailbox.count()


def recipients(mailbox: DevMailbox) -> list[str]:
    return sorted(parseaddr(entry.to)[1] for entry in mailbox.list(limit=10_000))


def deadline_value(days: int = 21) -> str:
    day = dt.now(ZoneInfo(ZONE)).date() + timedelta(days=days)
    return f"{day.isoformat()}T17:00"


PURPOSE = (
    "To agree the strategy's measures with every institution before it goes to the Council of Ministers."
)
COVER = "Please send your comments by the deadline.\nThe committee meets on 15 January to clear the draft."
CONTACT = ("Elira Kola", "elira.kola@kryeministria.gov.example")


def wizard_row(page: Page, key: str):  # type: ignore[no-untyped-def]
    return page.locator(f"tr[data-organisation='{key}']")


async def create_round(page: Page, live: Live) -> int:
    """The new-round wizard: title and purpose, the draft, organisations picked by search and by kind
    (no registry key typed), a role per organisation, the sections of some, the deadline, the cover
    message and the contact; then the previews of the invitation and of the review page."""
    await page.goto(f"{live.url}/console/rounds/new")
    await shot(page, live, "console-new-round", check=False)
    await page.get_by_role("textbox", name="Title").fill(TITLE)
    await page.locator("textarea[name=purpose]").fill(PURPOSE)
    # Only the one version's sections are shown: 13 columns of the matrix, one list.
    await expect(page.locator("th.matrix-section")).to_have_count(len(EVERY_SECTION))
    # Searching hides the others; ticking a kind's box ticks every row of that kind the search shows.
    search = page.locator("#w-search")
    await search.fill("durrës")
    await expect(page.locator("tr[data-organisation]:visible")).to_have_count(1)
    await search.fill("")
    for key in CONSULTED:
        await wizard_row(page, key).locator("input[name=organisations]").check()
    for key, role in OVERRIDES.items():
        await wizard_row(page, key).locator("select[name=role]").select_option(f"{key}:{role}")
    for key, numbers in ASSIGNED.items():
        row = wizard_row(page, key)
        for number in numbers:
            await row.locator(f"input[name=sections][value='{key}:{number}']").check()
        await expect(row.locator("input[name=all_sections]")).not_to_be_checked()  # a section ticked
    await page.locator("input[name=deadline]").fill(deadline_value())
    await expect(page.locator("[data-period-count]")).to_contain_text(re.compile(r"\d+"))
    await page.locator("textarea[name=cover_message]").fill(COVER)
    await page.locator("input[name=contact_name]").fill(CONTACT[0])
    await page.locator("input[name=contact_email]").fill(CONTACT[1])
    await shot(page, live, "console-new-round-filled", check=False)
    await page.get_by_role("button", name="Create draft round").click()
    await page.wait_for_url(re.compile(r"/console/rounds/\d+"))
    match = re.search(r"/console/rounds/(\d+)", page.url)
    assert match
    round_id = int(match.group(1))

    # What was chosen is what the round holds: roles and sections per organisation.
    response = await page.request.get(f"{live.url}/api/v1/rounds/{round_id}", headers=live.api)
    assert response.status == 200
    tasks = {task["organisation_key"]: task for task in (await response.json())["tasks"]}
    assert sorted(tasks) == sorted(CONSULTED)
    assert {key: task["role"] for key, task in tasks.items()} == ROLES

    # The previews, as each language's recipient and as a municipality's focal point will see them.
    await page.get_by_role("link", name="Preview the invitation in Albanian").click()
    await expect(page.locator(".preview-subject")).to_contain_text(TITLE)
    await expect(page.locator("pre.email-text")).to_contain_text("Mesazh nga koordinatori")
    await expect(page.locator("pre.email-text")).to_contain_text(COVER.splitlines()[1])
    await expect(page.locator(".email-headers")).to_contain_text(CONTACT[1])
    await shot(page, live, "console-preview-invitation-sq")
    await page.get_by_role("link", name="In English").click()
    await expect(page.locator("pre.email-text")).to_contain_text("A message from the coordinator")
    await shot(page, live, "console-preview-invitation-en")
    await page.goto(f"{live.url}/console/rounds/{round_id}/preview/review?organisation=municipality-tirane")
    await expect(page.locator("section.section")).to_have_count(len(MUNICIPAL_SECTIONS))
    await expect(page.locator("form[method=post]:not([action='/console/logout'])")).to_have_count(0)
    await shot(page, live, "console-preview-review")
    await page.goto(f"{live.url}/console/rounds/{round_id}/edit")
    await expect(page.get_by_role("textbox", name="Title")).to_have_value(TITLE)
    await shot(page, live, "console-edit-round", check=False)  # the new-round page's template
    await page.goto(f"{live.url}/console/rounds/{round_id}")
    return round_id


# The coordinator's answers: (organisation, section, response, justification, new wording).
SAVED_TITLE = "Outside the strategy's scope"
SAVED_TEXT = "This is outside the scope of the strategy: the Law on Foreigners governs it."
OBJECTION_ANSWER = "The list is agreed with the regional employment offices each year."
OBJECTION_WORDING = "The shortage list is agreed each year with the regional employment offices."
BULK_ANSWER = "Taken into the revised draft."
# What each comment (by its words) should end as in the matrix: response, justification, new wording.
ANSWERED = {
    "The shortage list cannot be set": ("Partly accepted", OBJECTION_ANSWER, OBJECTION_WORDING),
    FORMULA[:30]: ("Rejected", SAVED_TEXT, ""),
    "Cost the labour-migration measures": ("Accepted", BULK_ANSWER, ""),
    "Municipal one-stop shops": ("Accepted", BULK_ANSWER, ""),
    "Use the Palermo Protocol's terms": ("Accepted", BULK_ANSWER, ""),
}


def comment_card(page: Page, words: str):  # type: ignore[no-untyped-def]
    return page.locator("article.comment-card").filter(has_text=words)


async def answer_comments(page: Page, live: Live, round_id: int) -> None:
    answers = f"{live.url}/console/rounds/{round_id}/comments"
    await page.goto(answers)
    await expect(page.locator("article.comment-card")).to_have_count(len(ANSWERED))
    await expect(page.locator("#objections tbody tr")).to_have_count(1)
    await shot(page, live, "console-comments", check=False)

    # A reusable answer, saved once, then picked for the comment it fits.
    saved = page.locator("#saved-texts form")
    await saved.locator("input[name=title]").fill(SAVED_TITLE)
    await saved.locator("select[name=response]").select_option("rejected")
    await saved.locator("textarea[name=text]").fill(SAVED_TEXT)
    await saved.get_by_role("button", name="Save this answer for reuse").click()
    await expect(page.locator("#saved-texts [role=status]")).to_be_visible()
    await expect(page.locator("#saved-texts")).to_contain_text(SAVED_TEXT)

    formula = comment_card(page, "HYPERLINK")
    await open_details(formula.locator("details"))
    await formula.locator("select[name=answer_text_id]").select_option(label=f"{SAVED_TITLE} (rejected)")
    await formula.get_by_role("button", name="Save the answer as a draft").click()
    await expect(comment_card(page, "HYPERLINK")).to_contain_text(f"Rejected — {SAVED_TEXT}")

    # The objection, answered on its own, with new wording.
    objection = comment_card(page, "The shortage list cannot be set")
    await open_details(objection.locator("details"))
    await objection.locator("select[name=response]").select_option("partially_accepted")
    await objection.locator("textarea[name=justification]").fill(OBJECTION_ANSWER)
    await objection.locator("textarea[name=new_wording]").fill(OBJECTION_WORDING)
    await objection.get_by_role("button", name="Save the answer as a draft").click()
    objection = comment_card(page, "The shortage list cannot be set")
    await expect(objection.get_by_role("status")).to_be_visible()
    await expect(objection).to_contain_text(
        re.compile(rf"Part(ly|ially) accepted — {re.escape(OBJECTION_ANSWER)}")
    )

    # One answer for three similar comments, ticked.
    ticked = [words for words, (_response, answer, _new) in ANSWERED.items() if answer == BULK_ANSWER]
    for words in ticked:
        await comment_card(page, words).get_by_label("Include in the answer for the ticked comments").check()
    bulk = page.locator("#bulk-form")
    await bulk.locator("select[name=response]").select_option("accepted")
    await bulk.locator("textarea[name=justification]").fill(BULK_ANSWER)
    await bulk.get_by_role("button", name="Answer the ticked comments").click()
    await expect(page.locator("#bulk [role=status]")).to_be_visible()
    for words in ticked:
        await expect(comment_card(page, words)).to_contain_text(f"Accepted — {BULK_ANSWER}")
    await shot(page, live, "console-comments-answered", check=False)


async def publish_answers(page: Page, live: Live, round_id: int, sent_before: int) -> None:
    """Publishing sends each organisation answered one feedback letter, to each of its contacts."""
    await page.goto(f"{live.url}/console/rounds/{round_id}/comments")
    await page.locator("#publish").get_by_role("button", name="Publish the answers").click()
    await expect(page.locator("#publish [role=status]")).to_be_visible()
    commented = [review.key for review in REVIEWS if review.said]
    letters = contacts_of(live, commented)
    await wait_for_mail(live, sent_before + len(letters))
    feedback = [
        entry
        for entry in live.mailbox.list(limit=10_000)
        if "comments" in entry.subject.lower() or "komentet" in entry.subject.lower()
    ]
    assert sorted(parseaddr(entry.to)[1] for entry in feedback) == sorted(letters)
    by_address = {parseaddr(entry.to)[1]: entry for entry in feedback}
    assert by_address[live.row("iom-albania-observer")["focal_point_email"]].subject.startswith(
        "What became of your comments"
    )
    assert by_address[live.row("ministry-of-interior")["focal_point_email"]].subject.startswith(
        "Çfarë u bë me komentet tuaja"
    )
    letter = live.mailbox.get(by_address[live.row("ministry-of-interior")["focal_point_email"]].key)
    assert OBJECTION_ANSWER in letter.text
    assert OBJECTION_WORDING in letter.text

    # The letter as the developer sees it in the dev mailbox.
    await page.goto(f"{live.url}/dev/mail")
    await (
        page.locator("table.mail-list tbody tr")
        .filter(has_text=live.row("ministry-of-interior")["focal_point_email"])
        .filter(has_text="komentet")
        .get_by_role("link")
        .first.click()
    )
    await expect(page.locator(".mail-text")).to_contain_text(OBJECTION_ANSWER)
    await shot(page, live, "devmail-feedback-letter")


MATRIX_HEADER = [
    "no.",
    "section",
    "paragraph",
    "organisation",
    "role",
    "type",
    "weight",
    "comment",
    "proposed wording",
    "response",
    "justification",
    "new wording",
]


@dataclass(frozen=True)
class Expected:
    """A matrix row as the test expects it, from what the focal points said and the answers."""

    section: str
    paragraph: str
    organisation: str
    role: str
    kind: str
    weight: str
    body: str
    proposed_wording: str
    response: str
    justification: str
    new_wording: str


def expected_rows(live: Live) -> list[Expected]:
    rows = []
    for review in REVIEWS:
        for said in review.said:
            (response, justification, new_wording) = next(
                answer for words, answer in ANSWERED.items() if said.body.startswith(words)
            )
            rows.append(
                Expected(
                    said.section,
                    said.paragraph or "",
                    live.row(review.key)["name_en"],
                    ROLES[review.key],
                    said.kind,
                    said.weight,
                    said.body,
                    said.proposed_wording,
                    response,
                    justification,
                    new_wording,
                )
            )
    return rows


def check_matrix_rows(found: list[list[str]], live: Live, *, spreadsheet: bool) -> None:
    """Each comment once, numbered 1.., every column as the focal point said it and the coordinator
    answered it; in the spreadsheet, the comment that starts with '=' is text, never a formula."""
    assert [row[0] for row in found] == [str(number) for number in range(1, len(found) + 1)]
    by_body: dict[str, list[str]] = {}
    for row in found:
        body = row[7]
        if spreadsheet and body.startswith("'="):
            body = body[1:]
        by_body[body] = row
    expected = expected_rows(live)
    assert sorted(by_body) == sorted(row.body for row in expected)
    for want in expected:
        row = by_body[want.body]
        assert row[1:12] == [
            want.section,
            want.paragraph,
            want.organisation,
            want.role,
            want.kind,
            want.weight,
            row[7],  # checked above (with the spreadsheet's leading apostrophe)
            want.proposed_wording,
            want.response,
            want.justification,
            want.new_wording,
        ], want.body


def check_matrix_xlsx(content: bytes, live: Live) -> None:
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows())
    header_at = next(
        index
        for index, row in enumerate(rows)
        if [str(cell.value or "").strip().lower() for cell in row[:12]] == MATRIX_HEADER
    )
    body = [row for row in rows[header_at + 1 :] if any(cell.value for cell in row)]
    formula_cells = [
        cell for row in body for cell in row if str(cell.value or "").lstrip("'").startswith("=")
    ]
    assert formula_cells, "the comment starting with '=' is not in the matrix"
    for cell in formula_cells:
        assert cell.data_type == "s", f"{cell.coordinate} would be evaluated as a formula"
        assert not str(cell.value).startswith("="), f"{cell.coordinate} starts with '=': {cell.value!r}"
    check_matrix_rows(
        [[str(cell.value if cell.value is not None else "") for cell in row] for row in body],
        live,
        spreadsheet=True,
    )


def check_matrix_docx(content: bytes, live: Live) -> None:
    from docx import Document

    tables = Document(io.BytesIO(content)).tables
    table = next(
        table
        for table in tables
        if [cell.text.strip().lower() for cell in table.rows[0].cells[:12]] == MATRIX_HEADER
    )
    check_matrix_rows([[cell.text for cell in row.cells] for row in table.rows[1:]], live, spreadsheet=False)


def check_report_pdf(content: bytes) -> str:
    from pypdf import PdfReader

    text = " ".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)
    text = re.sub(r"\s+", " ", text)
    commented = sum(1 for review in REVIEWS for _ in review.said)
    signed = sum(1 for review in REVIEWS if review.decision)
    for figure in (
        f"{len(CONSULTED)} organisations were consulted",
        f"{signed} organisations answered (signed off); {len(CONSULTED) - signed} did not",
        f"{commented} comments",
        "Accepted: 3",
        "Partly accepted: 1",
        "Rejected: 1",
        "Noted: 0",
    ):
        assert figure in text, f"{figure!r} is not in the report's text: {text[:3000]}"
    return text


async def download(page: Page, link_name: str) -> bytes:
    """Click a download link of the page and read what the browser saved."""
    async with page.expect_download() as started:
        await page.get_by_role("link", name=link_name).first.click()
    saved = await (await started.value).path()
    return saved.read_bytes()


async def exports(page: Page, live: Live, round_id: int) -> None:
    await page.goto(f"{live.url}/console/rounds/{round_id}/report")
    await expect(page.get_by_role("heading", name="Consultation report", level=1)).to_be_visible()
    await expect(page.locator("main")).to_contain_text(f"{len(CONSULTED)} organisations were consulted.")
    await shot(page, live, "console-report", check=False)
    check_matrix_xlsx(await download(page, "Comment matrix (Excel)"), live)
    check_matrix_docx(await download(page, "Comment matrix (Word)"), live)
    check_report_pdf(await download(page, "Download PDF"))
    # The same files from the JSON API, with the coordinator's API token.
    for path in ("comment-matrix.xlsx", "comment-matrix.docx", "report.pdf"):
        response = await page.request.get(f"{live.url}/api/v1/rounds/{round_id}/{path}", headers=live.api)
        assert response.status == 200, f"/api/v1/rounds/{round_id}/{path}: {response.status}"
        if path.endswith("xlsx"):
            check_matrix_xlsx(await response.body(), live)
        elif path.endswith("docx"):
            check_matrix_docx(await response.body(), live)
        else:
            check_report_pdf(await response.body())


async def test_a_coordinator_runs_a_round_from_the_registry_to_the_report(
    shared_chromium: Browser, live: Live
) -> None:
    problems = PageProblems()
    async with browser_context(shared_chromium) as context:
        page = problems.watch(await context.new_page())
        page.on("dialog", lambda dialog: dialog.accept())  # the launch button asks for confirmation
        await page.goto(f"{live.url}/console/login")
        await shot(page, live, "console-login", check=False)
        await sign_in(page, live.url)
        await shot(page, live, "console-rounds-empty", check=False)
        live.lap("signed in")

        await import_registry(page, live)
        live.lap("registry imported")
        await upload_draft(page, live)
        live.lap("draft uploaded")
        round_id = await create_round(page, live)
        live.lap("round created")
        dashboard = f"{live.url}/console/rounds/{round_id}"
        await shot(page, live, "console-round-draft")

        await page.get_by_role("button", name="Launch round").click()
        await page.wait_for_url(re.compile(rf"/console/rounds/{round_id}\?done="))
        contacts = contacts_of(live, CONSULTED)
        await wait_for_mail(live, len(contacts))
        assert recipients(live.mailbox) == sorted(contacts)
        # From the secretariat, and a reply reaches the round's contact.
        sent = BytesParser(policy=policy.default).parsebytes(
            live.mailbox.get(live.mailbox.list(limit=1)[0].key).raw
        )
        assert parseaddr(str(sent["From"]))[0] == live.settings.secretariat_name
        assert parseaddr(str(sent["Reply-To"])) == CONTACT
        live.lap(f"launched; {len(contacts)} invitations in the sink")
        await page.goto(f"{live.url}/dev/mail")
        await expect(page.locator("table.mail-list tbody tr")).to_have_count(len(contacts))
        await shot(page, live, "devmail-invitations")
        approvers = len(APPROVERS)
        await expect_dashboard(
            page, dashboard, {"invited": len(CONSULTED)}, approved=0, approvers=approvers, objections=0
        )
        await shot(page, live, "console-round-launched", check=False)

        for review in REVIEWS:
            await review_in_browser(shared_chromium, live, review, problems)
        live.lap(f"{len(REVIEWS)} focal points reviewed in their browsers")
        signed = [review for review in REVIEWS if review.decision]
        await expect_dashboard(
            page,
            dashboard,
            {
                "invited": len(CONSULTED) - len(REVIEWS),
                "commenting": len([review for review in REVIEWS if review.said and not review.decision]),
                "signed_off": len(signed),
            },
            approved=sum(
                1
                for review in signed
                if review.key in APPROVERS and review.decision in ("approve", "approve_with_comments")
            ),
            approvers=approvers,
            objections=1,
        )
        row = page.locator("#task-ministry-of-interior")
        await expect(row).to_contain_text("Object")
        await expect(row).to_contain_text("1 objection")
        await shot(page, live, "console-round-reviewed")

        await answer_comments(page, live, round_id)
        live.lap("comments answered")
        # Besides the invitations, each sign-off's code went to its signer.
        codes = sum(1 for review in REVIEWS if review.decision)
        await publish_answers(page, live, round_id, len(contacts) + codes)
        live.lap("answers published; feedback letters in the sink")
        # The objection was partly accepted and the answer published: it no longer stands.
        await page.goto(dashboard)
        await expect(page.locator("#clearance")).to_contain_text("Objections: 0 not answered, 0 maintained.")
        await shot(page, live, "console-round-answered", check=False)
        await exports(page, live, round_id)
        live.lap("matrix and report downloaded and read")
        await page.goto(f"{live.url}/console/audit")
        await shot(page, live, "console-audit", check=False)
        await page.goto(f"{live.url}/console")
        await shot(page, live, "console-rounds", check=False)

    assert problems.seen == []
    assert live.problems == [], "\n".join(live.problems)

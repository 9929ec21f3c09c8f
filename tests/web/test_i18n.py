"""The pages in Albanian and English: the review page in its organisation's language, a switch that works
without JavaScript (a link, then a cookie), the console in English unless switched, dates in the
language and the reader's time zone, catalogs that lack nothing, and emails in both languages."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from jinja2 import meta
from sqlalchemy import update
from sqlmodel import col

from models.enums import CommentKind, CommentWeight, ContactRole, Decision, Language, MessageKind, Role
from models.organisations import Organisation
from notifications.rendering import TEMPLATES_DIR, _environment, render_email
from services import documents, errors
from services.db import Database
from services.links import ReviewState
from services.settings import Settings
from services.web import csrf, i18n, review_view
from services.web.app import build_templates
from services.web.locale import check, extract
from tests.harness import TEST_ACTOR, csrf_of, fixture_path
from tests.notifications.support import round_closed_context
from tests.web.test_console import PASSWORD, create_login
from tests.web.test_review_page import (
    BuiltRound,
    build_round,
    open_client,
    page_text,
)

TIRANE = ZoneInfo("Europe/Tirane")
MONTHS_SQ = [
    "janar",
    "shkurt",
    "mars",
    "prill",
    "maj",
    "qershor",
    "korrik",
    "gusht",
    "shtator",
    "tetor",
    "nëntor",
    "dhjetor",
]
MINISTRY = "ministry-of-interior"


def albanian_date(moment: datetime) -> str:
    local = moment.astimezone(TIRANE)
    return f"{local.day} {MONTHS_SQ[local.month - 1]} {local.year}"


@pytest.fixture
async def built(db: Database, settings: Settings) -> BuiltRound:
    return await build_round(db, settings)


def path_of(built: BuiltRound, key: str = MINISTRY) -> str:
    return "/t/" + built.tokens[key][0]


# ---------------------------------------------------------------------------------- the review page


async def test_the_review_page_of_an_albanian_organisation_is_in_albanian(
    db: Database, settings: Settings, built: BuiltRound
) -> None:
    http, _ = await open_client(settings, db, language=None)  # a browser that has chosen nothing
    async with http:
        page = await http.get(path_of(built))
    assert page.status_code == 200, page.text
    assert '<html lang="sq">' in page.text
    assert page.headers["content-language"] == "sq"
    text = page_text(page)
    for albanian in (
        "Konsultimi nr.",
        "Institucioni Ministry of Interior · Ministria e Brendshme",
        "Seksionet për shqyrtim",
        "ditë pune të mbetura",
        "Gjendja i hapur",
        "Shtoni një koment për seksionin 4",
        "I gjithë seksioni",
        "Qëndrimi përfundimtar: Ministria e Brendshme",
        "Jam i/e autorizuar të jap qëndrimin përfundimtar për institucionin Ministria e Brendshme.",
        "Miratojmë seksionet siç janë hartuar",
        "Më shumë kohë, ose dikush tjetër",
    ):
        assert albanian in text, albanian
    for english in ("Sections to review", "Deadline", "Save comment", "Sign off for the organisation"):
        assert english not in text, english
    # The options the page builds in Python, and the deadline with its Albanian month, in Tirana's time.
    assert ">Vërejtje</option>" in page.text
    assert ">Kundërshtim: nuk mund të pajtohemi nëse nuk zgjidhet</option>" in page.text
    assert ">Thelbësor</option>" in page.text
    deadline = await _task_deadline(db, built)
    assert f"Afati {albanian_date(deadline)}, {deadline.astimezone(TIRANE):%H:%M} (Europe/Tirane)" in text


async def _task_deadline(db: Database, built: BuiltRound) -> datetime:
    from models.rounds import ReviewTask

    async with db.session() as session:
        task = await session.get(ReviewTask, built.tasks[MINISTRY])
    assert task is not None
    return task.deadline


async def test_an_english_organisation_s_page_starts_in_english(
    db: Database, settings: Settings, built: BuiltRound
) -> None:
    async with db.write_session() as session:
        await session.exec(
            update(Organisation).where(col(Organisation.key) == "municipality-tirane").values(language="en")
        )
        await session.commit()
    http, _ = await open_client(settings, db, language=None)
    async with http:
        english = await http.get(path_of(built, "municipality-tirane"))
        albanian = await http.get(path_of(built))
    assert '<html lang="en">' in english.text
    assert "Sections to review" in page_text(english)
    assert '<html lang="sq">' in albanian.text  # the other organisation keeps its own


async def test_the_switch_is_a_link_and_the_choice_is_kept_in_a_cookie(
    db: Database, settings: Settings, built: BuiltRound
) -> None:
    path = path_of(built)
    http, _ = await open_client(settings, db, language=None)
    async with http:
        albanian = await http.get(path)
        assert f'href="{path}?lang=en"' in albanian.text  # no script needed
        english = await http.get(f"{path}?lang=en")
        assert '<html lang="en">' in english.text
        assert "Sections to review" in page_text(english)
        cookie = english.headers["set-cookie"].lower()
        assert cookie.startswith(f"{i18n.COOKIE}=en")
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "max-age=" in cookie
        # The choice holds for the next pages: after a form and its redirect too.
        again = await http.get(path)
        assert '<html lang="en">' in again.text
        section = next(s for s in built.sections if s.number == "4")
        sent = await http.post(
            f"{path}/comments",
            data={
                "csrf_token": csrf_of(again),
                "submission_id": review_view.new_submission_id(),
                "section_id": str(section.id),
                "body": "A comment written in English.",
            },
        )
        assert sent.status_code == 303
        shown = await http.get(sent.headers["location"])
        assert "Your comment was saved." in shown.text
        # And back.
        back = await http.get(f"{path}?lang=sq")
        assert '<html lang="sq">' in back.text
        assert "Komenti juaj" not in back.text  # no notice asked for on this address
        assert '<html lang="sq">' in (await http.get(path)).text


async def test_refusals_are_in_the_page_s_language(
    db: Database, settings: Settings, built: BuiltRound
) -> None:
    path = path_of(built)
    section = next(s for s in built.sections if s.number == "4")
    http, _ = await open_client(settings, db, language=None)
    async with http:
        page = await http.get(path)
        empty = await http.post(
            f"{path}/comments",
            data={
                "csrf_token": csrf_of(page),
                "submission_id": review_view.new_submission_id(),
                "section_id": str(section.id),
                "body": "",
            },
        )
        unsigned = await http.post(
            f"{path}/sign-off",
            data={
                "csrf_token": csrf_of(page),
                "submission_id": review_view.new_submission_id(),
                "decision": "approve",
                "signer_name": "",
                "signer_title": "Drejtor",
                "authorised": "yes",
            },
        )
        without_comments = await http.post(
            f"{path}/sign-off",
            data={
                "csrf_token": csrf_of(page),
                "submission_id": review_view.new_submission_id(),
                "decision": "approve_with_comments",
                "signer_name": "Arben Hoxha",
                "signer_title": "Drejtor",
                "authorised": "yes",
            },
        )
        forged = await http.post(f"{path}/comments", data={"csrf_token": "0" * 64, "body": "Teksti im."})
    assert empty.status_code == 422
    assert "Nuk u regjistrua. komenti është bosh." in page_text(empty)
    # A refused form's page is at the form's address: its switch leads to the review page itself.
    assert f'href="{path}?lang=en"' in empty.text
    assert unsigned.status_code == 422
    assert "Emri dhe mbiemri juaj: kjo fushë është e detyrueshme." in page_text(unsigned)
    assert without_comments.status_code == 422
    assert "„Miratim me komente” kërkon të paktën një koment" in page_text(without_comments)
    assert forged.status_code == 403
    assert "Ky formular ka skaduar ose nuk erdhi nga ky sajt" in page_text(forged)


async def test_two_pages_rendered_at_once_keep_their_own_languages(
    db: Database, settings: Settings, built: BuiltRound
) -> None:
    albanian, _ = await open_client(settings, db, language=None)
    english, _ = await open_client(settings, db, language="en")
    async with albanian, english:
        pages = await asyncio.gather(
            *(client.get(path_of(built)) for _ in range(5) for client in (albanian, english))
        )
    for index, page in enumerate(pages):
        wanted, unwanted = ("Seksionet për shqyrtim", "Sections to review")[:: 1 if index % 2 == 0 else -1]
        assert wanted in page.text
        assert unwanted not in page.text


async def test_a_bad_link_s_page_is_in_the_chosen_language(db: Database, settings: Settings) -> None:
    http, _ = await open_client(settings, db, language="sq")
    async with http:
        page = await http.get("/t/not-a-token-at-all")
    assert page.status_code == 404
    text = page_text(page)
    assert "Lidhje e pavlefshme" in text
    assert "Kjo lidhje shqyrtimi nuk është e vlefshme." in text
    assert "Merrni sërish lidhjet tuaja me email" in text


async def test_the_lost_link_page_follows_the_browser_and_keeps_its_albanian_lines_in_english(
    db: Database, settings: Settings
) -> None:
    http, _ = await open_client(settings, db, language=None)
    async with http:
        albanian = await http.get("/links/lost", headers={"Accept-Language": "sq-AL,sq;q=0.9,en;q=0.5"})
        english = await http.get("/links/lost", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="sq">' in albanian.text
    assert "<h1>Keni humbur lidhjen tuaj të shqyrtimit?</h1>" in albanian.text
    assert "Lost your review link?" not in albanian.text
    assert '<html lang="en">' in english.text
    assert "<h1>Lost your review link?</h1>" in english.text
    assert "Keni humbur lidhjen tuaj të shqyrtimit?" in english.text  # for whoever did not see the switch


# ---------------------------------------------------------------------------------------- the console


async def test_the_console_is_in_english_unless_switched_and_shows_tirana_time(
    db: Database, settings: Settings
) -> None:
    assert settings.timezone == "Europe/Tirane"  # the default
    await create_login(db, "coordinator@secretariat.example", Role.coordinator)
    async with db.write_session() as session:
        document = await documents.create_document(
            session,
            title="Migration governance strategy",
            filename="draft.md",
            content=fixture_path("draft-migration-governance-strategy.md").read_bytes(),
            actor=TEST_ACTOR,
        )
    uploaded = document.created_at.astimezone(TIRANE)
    http, _ = await open_client(settings, db, language=None)
    async with http:
        http.headers["Accept-Language"] = "sq"  # the browser prefers Albanian: the console stays English
        login = await http.get("/console/login")
        assert '<html lang="en">' in login.text
        assert "<h1>Sign in</h1>" in login.text
        signed_in = await http.post(
            "/console/login",
            data={
                "csrf_token": csrf_of(login),
                "email": "coordinator@secretariat.example",
                "password": PASSWORD,
                "next": "/console/documents",
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        drafts = await http.get("/console/documents")
        assert '<html lang="en">' in drafts.text
        text = page_text(drafts)
        assert f"first uploaded {uploaded.day} {uploaded:%B %Y, %H:%M} (Europe/Tirane)" in text
        assert 'href="/console/documents?lang=sq"' in drafts.text

        albanian = await http.get("/console/documents?lang=sq")
        assert '<html lang="sq">' in albanian.text
        assert albanian.headers["set-cookie"].startswith(f"{i18n.COOKIE}=sq")
        text = page_text(albanian)
        for words in ("Konsultimet", "Institucionet", "Projektdokumentet", "Dilni", "koordinator"):
            assert words in text, words
        assert (
            f"ngarkuar për herë të parë më {albanian_date(uploaded)}, {uploaded:%H:%M} (Europe/Tirane)"
            in text
        )
        assert '<html lang="sq">' in (await http.get("/console/documents")).text  # kept by the cookie


# ------------------------------------------------------------------------------------------ catalogs


def test_every_text_of_the_pages_has_its_albanian() -> None:
    """A text marked for translation (a template's _() or {% trans %}, Python's N_(), a refusal of the
    review page's services) without its Albanian fails here. Run `make messages`, then translate what
    `python -m services.web.locale.check` lists, in services/web/locale/sq/LC_MESSAGES/messages.po."""
    missing = check.missing("sq")
    assert not missing, "texts without their Albanian:\n" + "\n".join(str(problem) for problem in missing)


def test_the_catalogs_are_read_from_the_po_files_as_they_are() -> None:
    albanian = i18n.translations("sq")
    assert albanian.gettext("Sections to review") == "Seksionet për shqyrtim"
    assert albanian.ngettext("%(count)s working day left", "%(count)s working days left", 1) == (
        "%(count)s ditë pune e mbetur"
    )
    assert albanian.ngettext("%(count)s working day left", "%(count)s working days left", 3) == (
        "%(count)s ditë pune të mbetura"
    )
    assert i18n.translations("en").gettext("Sections to review") == "Sections to review"
    assert albanian.gettext("a text nobody marked") == "a text nobody marked"


def test_templates_get_their_words_compiled_in_and_their_values_escaped(settings: Settings) -> None:
    templates = build_templates(settings)
    assert isinstance(templates, i18n.Templates)
    albanian = templates.environments["sq"]
    source = (
        '{{ _("Save comment") }}|{% trans %}Sign-off{% endtrans %}|{{ _("Sign-off for %(name)s", name=who) }}'
        "|{% trans name=who %}Sign-off for {{ name }}{% endtrans %}|{{ _(text) }}|{{ text|tr }}"
        "|{% trans count=n %}{{ count }} working day left"
        "{% pluralize %}{{ count }} working days left{% endtrans %}"
    )
    shown = albanian.from_string(source).render(who="<b>A & B</b>", text="Sign-off", n=2)
    assert shown.split("|") == [
        "Ruani komentin",
        "Qëndrimi përfundimtar",
        "Qëndrimi përfundimtar: &lt;b&gt;A &amp; B&lt;/b&gt;",
        "Qëndrimi përfundimtar: &lt;b&gt;A &amp; B&lt;/b&gt;",
        "Qëndrimi përfundimtar",
        "Qëndrimi përfundimtar",
        "2 ditë pune të mbetura",
    ]
    # Written into the compiled template: no call to look it up when the page is rendered.
    assert "Ruani komentin" in albanian.compile('{{ _("Save comment") }}', raw=True)
    english = templates.environments["en"].from_string(source).render(who="x", text="Sign-off", n=1)
    assert english.split("|")[0] == "Save comment"
    assert english.split("|")[-1] == "1 working day left"


def test_the_extractor_knows_every_domain_error() -> None:
    classes: set[str] = set()
    pending: list[type] = [errors.DomainError]
    while pending:
        current = pending.pop()
        if current.__module__ in ("services.errors", "services.web.csrf"):
            classes.add(current.__name__)
        pending.extend(current.__subclasses__())
    assert csrf.CsrfFailed.__name__ in classes
    assert classes <= extract.ERROR_CLASSES, "add the new DomainError classes to extract.ERROR_CLASSES"


def test_the_words_the_review_page_builds_in_python_cover_every_value() -> None:
    assert {value for value, _ in review_view._KINDS} == {str(kind) for kind in CommentKind}
    assert {value for value, _ in review_view._WEIGHTS} == {str(weight) for weight in CommentWeight}
    shown = set(review_view.LABELS)
    for enum in (ReviewState, ContactRole, CommentKind, CommentWeight, Decision):
        for value in enum:
            if enum is CommentWeight and value == CommentWeight.remark:
                continue  # a remark carries no tag on the page
            assert str(value).replace("_", " ") in shown, value


# -------------------------------------------------------------------------------------------- emails


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_email_is_written_in_both_languages_with_the_same_context(kind: MessageKind) -> None:
    environment = _environment()
    for part in ("subject", "txt", "html"):
        used = {}
        for language in Language:
            template = TEMPLATES_DIR / kind.value / f"{language.value}.{part}.j2"
            assert template.exists(), f"{kind.value} has no {language.value} {part}"
            used[language] = meta.find_undeclared_variables(environment.parse(template.read_text("utf-8")))
        assert used[Language.en] == used[Language.sq], (kind.value, part)


def test_the_coordinators_emails_have_their_albanian_subjects() -> None:
    closed = render_email("round_closed", "sq", round_closed_context())
    assert closed.subject.startswith("Konsultimi u mbyll: ")
    overdue = render_email(
        "escalation_summary",
        "sq",
        {
            "round_title": "Strategjia",
            "deadline_text": "15 dhjetor 2026, 17:00 (Europe/Tirane)",
            "grace_period_hours": 0,
            "overdue": [
                {"organisation_name": "Ministria e Brendshme", "escalation_email": "", "comments": 1}
            ],
            "round_url": "https://roundtable.example/console/rounds/1",
        },
    )
    assert overdue.subject == "1 institucion me afat të kaluar: Strategjia"
    assert "1 seksion i komentuar" in overdue.text
    asked = render_email(
        "extension_requested",
        "sq",
        {
            "round_title": "Strategjia",
            "organisation_name": "Ministria e Brendshme",
            "requested_by": "fp@ministry.example",
            "deadline_text": "15 dhjetor 2026, 17:00 (Europe/Tirane)",
            "wanted_text": "22 dhjetor 2026, 17:00 (Europe/Tirane)",
            "reason": "Na duhet mendimi i drejtorisë juridike.",
            "round_url": "https://roundtable.example/console/rounds/1",
        },
    )
    assert asked.subject == "Ministria e Brendshme kërkon më shumë kohë: Strategjia"
    assert "Kërkohet deri:  22 dhjetor 2026" in asked.text

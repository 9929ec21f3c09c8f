"""The invitation and round-closed emails, in Albanian and English, as text and as HTML."""

from __future__ import annotations

import html
import re

import pytest
from jinja2 import UndefinedError

from models.enums import Language, MessageKind
from notifications import parse_links, render_email
from tests.notifications.support import STRATEGY_EN, STRATEGY_SQ, invitation_context, round_closed_context

TRICKY_TITLE = 'Strategy <b>&</b> "plan"'


@pytest.mark.parametrize("language", [Language.sq, Language.en])
def test_invitation_says_who_what_when_and_how(language: Language) -> None:
    context = invitation_context()
    email = render_email(MessageKind.invitation, language, context)

    for part in (email.text, email.html):
        assert "Ministria e Shëndetësisë dhe Mbrojtjes Sociale" in part
        assert STRATEGY_SQ in part
        assert "15 dhjetor 2026, 17:00 (Europe/Tirane)" in part
        assert "Arbën Çela" in part
        assert "Sekretariati Teknik" in part
        for heading in ("Qëllimi dhe fusha e zbatimit", "Migracioni i punës", "Kthimi dhe riintegrimi"):
            assert heading in part
    assert "4. Migracioni i punës" in email.text
    assert STRATEGY_SQ in email.subject
    assert "\n" not in email.subject
    assert parse_links(email.text) == [context["link_url"]]
    assert f'href="{context["link_url"]}"' in email.html
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{language.value}">' in email.html


def test_albanian_invitation_is_written_in_albanian() -> None:
    email = render_email("invitation", "sq", invitation_context())

    assert email.subject.startswith("Ftesë për konsultim: ")
    for phrase in ("Afati", "Seksionet për shqyrtim", "Hapni lidhjen tuaj personale", "pikë fokale"):
        assert phrase in email.text
        assert phrase in email.html
    assert "mos ia përcillni askujt" in email.text  # do not forward
    assert "njoftoni koordinatorin" in email.text  # a colleague instead: tell the coordinator
    assert "Hapja e lidhjes nuk ndryshon asgjë" in email.text  # opening the link changes nothing
    assert "në emër të institucionit" in email.text  # sign-off is for the organisation
    assert "In English:" in email.text  # a line for readers without Albanian


def test_english_invitation_states_the_rules_of_the_link() -> None:
    email = render_email("invitation", "en", invitation_context())

    assert email.subject.startswith("Consultation invitation: ")
    for part in (email.text, email.html):
        assert "Please do not forward it" in part
        assert "tell the consultation coordinator" in part
        assert "Opening the link changes nothing" in part
        assert "on behalf of Ministria e Shëndetësisë dhe Mbrojtjes Sociale" in part
        assert "Sections to review" in part
        assert "Deadline" in part


@pytest.mark.parametrize("language", ["sq", "en"])
def test_invitation_to_an_alternate_says_the_focal_point_has_it_too(language: str) -> None:
    focal = render_email("invitation", language, invitation_context(contact_role="focal_point"))
    alternate = render_email("invitation", language, invitation_context(contact_role="alternate"))

    assert focal.text != alternate.text
    marker = "pikës fokale" if language == "sq" else "alternate focal point"
    assert marker in alternate.text
    assert marker in alternate.html
    assert marker not in focal.text


@pytest.mark.parametrize(("language", "greeting"), [("sq", "Të nderuar kolegë,"), ("en", "Dear colleague,")])
def test_invitation_without_a_contact_name_greets_politely(language: str, greeting: str) -> None:
    email = render_email("invitation", language, invitation_context(contact_name=""))

    assert email.text.startswith(greeting)
    assert greeting in email.html


@pytest.mark.parametrize("language", ["sq", "en"])
@pytest.mark.parametrize("missing", sorted(invitation_context()))
def test_every_invitation_key_is_required(language: str, missing: str) -> None:
    context = invitation_context()
    del context[missing]

    with pytest.raises(UndefinedError):
        render_email("invitation", language, context)


@pytest.mark.parametrize("missing", sorted(round_closed_context()))
def test_every_round_closed_key_is_required(missing: str) -> None:
    context = round_closed_context()
    del context[missing]

    with pytest.raises(UndefinedError):
        render_email("round_closed", "en", context)


@pytest.mark.parametrize("language", ["sq", "en"])
def test_html_special_characters_are_escaped_in_html_only(language: str) -> None:
    email = render_email(
        "invitation",
        language,
        invitation_context(
            round_title=TRICKY_TITLE, organisation_name="Ministry <script>", contact_name="O'Neil & Co"
        ),
    )

    assert TRICKY_TITLE in email.subject
    assert TRICKY_TITLE in email.text
    assert "Ministry <script>" in email.text
    assert "O'Neil & Co" in email.text
    assert "<b>&</b>" not in email.html
    assert "<script>" not in email.html
    assert html.escape(TRICKY_TITLE) in email.html.replace("&#34;", "&quot;").replace("&#39;", "&#x27;")
    assert "Ministry &lt;script&gt;" in email.html
    assert "O&#39;Neil &amp; Co" in email.html


def test_a_link_with_a_query_string_is_escaped_in_the_href_and_intact_in_the_text() -> None:
    link = "http://testserver/t/abc?x=1&y=2"
    email = render_email("invitation", "en", invitation_context(link_url=link))

    assert parse_links(email.text) == [link]
    assert 'href="http://testserver/t/abc?x=1&amp;y=2"' in email.html


def test_round_closed_summarises_the_round_for_the_coordinator() -> None:
    context = round_closed_context()
    email = render_email("round_closed", "en", context)

    assert email.subject == f"Consultation closed: {STRATEGY_EN}"
    for part in (email.text, email.html):
        assert "16 December 2026, 17:00 (Europe/Tirane)" in part
        assert "deadline passed" in part
        assert "57" in part
        for name in ("Bashkia Cërrik", "Bashkia Dibër", "Institute of Statistics", "Ministry of Finance"):
            assert name in part
        assert "Approve with comments" in part
        assert "No opinion" in part
    assert re.search(r"No opinion:\s+0\n", email.text)  # a decision nobody chose still shows, as 0
    assert re.search(r"Approve with comments:\s+3\n", email.text)
    assert "Objections (2)" in email.text
    assert "No response (3)" in email.text
    assert parse_links(email.text) == ["http://testserver/console/rounds/7"]
    assert 'href="http://testserver/console/rounds/7"' in email.html


def test_round_closed_when_everyone_signed_off() -> None:
    context = round_closed_context(
        reason="all_signed_off",
        counts={"organisations": 3, "signed_off": 3, "no_response": 0, "comments": 4},
        no_response=[],
        objections=[],
    )
    email = render_email("round_closed", "en", context)

    assert "every organisation has signed off" in email.text
    assert "None: every organisation answered." in email.text
    assert "None: every organisation answered." in email.html


def test_round_closed_in_albanian_is_written_in_albanian() -> None:
    context = round_closed_context(round_title=TRICKY_TITLE, objections=["A & B"])
    email = render_email("round_closed", "sq", context)

    assert email.subject == f"Konsultimi u mbyll: {TRICKY_TITLE}"
    assert "Kundërshtime (1)" in email.text
    assert "Hapat e mëtejshëm" in email.html
    assert "A &amp; B" in email.html
    assert "A & B" in email.text


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("invitation", invitation_context(contact_role="secretary")),
        ("invitation", invitation_context(link_url="javascript:alert(1)")),
        ("round_closed", round_closed_context(reason="boredom")),
    ],
)
def test_values_that_would_make_the_email_lie_are_refused(kind: str, context: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must be|is not one of"):
        render_email(kind, "en", context)


def test_unknown_kind_or_language_is_refused() -> None:
    with pytest.raises(ValueError, match="telegram"):
        render_email("telegram", "en", invitation_context())
    with pytest.raises(ValueError, match="fr"):
        render_email("invitation", "fr", invitation_context())

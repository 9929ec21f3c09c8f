"""The lost-link message, in Albanian and English, as text and as HTML: one item per link it carries."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from models.enums import Language, MessageKind
from notifications import parse_links, render_email
from tests.notifications.support import STRATEGY_EN, STRATEGY_SQ


def item(**overrides: object) -> dict[str, Any]:
    return {
        "link_id": "a" * 32,
        "link_url": "http://testserver/t/first-token",
        "round_title": STRATEGY_SQ,
        "organisation_name": "Ministria e Brendshme",
        "contact_role": "focal_point",
        "deadline_text": "15 dhjetor 2026, 17:00 (Europe/Tirane)",
        "deadline_passed": False,
        **overrides,
    }


def context(**overrides: object) -> dict[str, Any]:
    return {
        "contact_name": "Arbën Çela",
        "sender_name": "Sekretariati Teknik",
        "items": [
            item(),
            item(
                link_id="b" * 32,
                link_url="http://testserver/t/second-token",
                round_title=STRATEGY_EN,
                organisation_name="Bashkia Tiranë",
                contact_role="alternate",
                deadline_passed=True,
            ),
        ],
        **overrides,
    }


@pytest.mark.parametrize("language", [Language.sq, Language.en])
def test_every_link_is_in_both_parts_with_its_round_and_organisation(language: Language) -> None:
    email = render_email(MessageKind.lost_link, language, context())

    assert parse_links(email.text) == ["http://testserver/t/first-token", "http://testserver/t/second-token"]
    for part in (email.text, email.html):
        for shown in (STRATEGY_SQ, STRATEGY_EN, "Ministria e Brendshme", "Bashkia Tiranë", "Arbën Çela"):
            assert shown in part
        assert "Sekretariati Teknik" in part
    assert 'href="http://testserver/t/first-token"' in email.html
    assert 'href="http://testserver/t/second-token"' in email.html
    assert f'<html lang="{language.value}">' in email.html
    assert "\n" not in email.subject
    assert "2" in email.subject


def test_the_albanian_message_is_written_in_albanian_with_a_line_in_english() -> None:
    email = render_email("lost_link", "sq", context())

    assert email.subject == "Lidhjet tuaja të shqyrtimit: 2 konsultime"
    for phrase in ("Lidhja juaj personale", "zëvendësi i pikës fokale", "pika fokale", "ka kaluar"):
        assert phrase in email.text
    assert "mos ia përcillni askujt" in email.text  # do not forward
    assert "vazhdojnë të funksionojnë" in email.text  # the links you had keep working
    assert "In English:" in email.text


def test_the_english_message_says_the_old_links_keep_working_and_what_to_do_if_unasked() -> None:
    email = render_email("lost_link", "en", context())

    assert email.subject == "Your review links: 2 consultations"
    for part in (email.text, email.html):
        assert "keep working" in part
        assert "If you did not ask for this" in part
        assert "the alternate focal point" in part
        assert "(passed: the page shows what was recorded)" in part


@pytest.mark.parametrize("language", ["sq", "en"])
def test_one_link_is_named_in_the_subject(language: str) -> None:
    email = render_email("lost_link", language, context(items=[item()]))

    assert STRATEGY_SQ in email.subject
    assert parse_links(email.text) == ["http://testserver/t/first-token"]
    assert "passed" not in email.text
    assert "ka kaluar" not in email.text


@pytest.mark.parametrize("language", ["sq", "en"])
@pytest.mark.parametrize(
    "missing", sorted(set(context()) | {f"items.{key}" for key in item()} - {"items.link_id"})
)
def test_every_key_is_required(language: str, missing: str) -> None:
    values = context(items=[item()])
    if missing.startswith("items."):
        del values["items"][0][missing.removeprefix("items.")]
    else:
        del values[missing]

    with pytest.raises(UndefinedError):
        render_email("lost_link", language, values)


@pytest.mark.parametrize("language", ["sq", "en"])
def test_names_are_escaped_in_the_html_only(language: str) -> None:
    email = render_email(
        "lost_link",
        language,
        context(items=[item(round_title='Plan <b>&</b> "x"', organisation_name="Ministry <script>")]),
    )

    assert "Ministry <script>" in email.text
    assert "Plan <b>&</b>" in email.text
    assert "<script>" not in email.html
    assert "Ministry &lt;script&gt;" in email.html
    assert "<b>&</b>" not in email.html

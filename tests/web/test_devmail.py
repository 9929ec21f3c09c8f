"""The dev mailbox viewer: what the local SMTP sink received, links one click away, HTML kept in a sandbox."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from models.enums import Role
from notifications.mailbox import MaildirSink
from services.db import Database
from services.settings import Environment, Settings
from services.web.app import create_app
from services.web.pages.devmail import linkify
from tests.conftest import Stack
from tests.harness import csrf_of, eventually
from tests.web.test_console import (
    app_reading_the_sink,
    create_login,
    import_registry,
    round_form,
    sign_in,
    submit,
    upload_draft,
)

HTML = {"Accept": "text/html"}
HOSTILE_HTML = (
    '<p onmouseover="steal()">Dear colleague,</p>'
    '<script>fetch("/console", {credentials: "include"})</script>'
    '<a href="http://testserver/t/abc123">Open the review page</a>'
)
TEXT = (
    "Dear colleague,\n\nOpen http://testserver/t/abc123?lang=sq&x=1. <b>not bold</b>\n"
    'Not a link: javascript:alert(1) and "quoted" text.\n'
)


def sink_of(settings: Settings) -> MaildirSink:
    """The sink `roundtable dev` runs, filing into the directory the viewer reads."""
    return MaildirSink(Path(settings.data_dir) / "mail")


def file_message(
    sink: MaildirSink, *, to: str, subject: str, text: str = TEXT, html: str | None = HOSTILE_HTML
) -> str:
    message = EmailMessage()
    message["From"] = "Roundtable <roundtable@localhost>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{abs(hash(subject))}@roundtable.test>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return sink.store("roundtable@localhost", [to], message.as_bytes())


@pytest.fixture
async def web(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    ) as client:
        yield client


async def test_the_inbox_lists_messages_newest_first_with_their_links(
    web: httpx.AsyncClient, settings: Settings
) -> None:
    empty = await web.get("/dev/mail")
    assert empty.status_code == 200
    assert "No messages yet" in empty.text

    sink = sink_of(settings)
    file_message(sink, to="first@ministry.example", subject="First invitation")
    file_message(sink, to="second@ministry.example", subject="Second invitation", text="No links here.\n")
    inbox = await web.get("/dev/mail")
    assert "(2 messages)" in inbox.text
    assert inbox.text.index("Second invitation") < inbox.text.index("First invitation")
    assert "first@ministry.example" in inbox.text
    # The review link is right in the list, clickable, query string and all.
    assert '<a href="http://testserver/t/abc123?lang=sq&amp;x=1"' in inbox.text
    assert ">/t/abc123?lang=sq&amp;x=1</a>" in inbox.text


async def test_the_inbox_is_paged_by_fifty(web: httpx.AsyncClient, settings: Settings) -> None:
    sink = sink_of(settings)
    for number in range(51):
        file_message(sink, to=f"fp{number}@example.org", subject=f"Message number {number:02d}", html=None)
    first = await web.get("/dev/mail")
    assert first.text.count('href="/dev/mail/') == 50
    assert "Message number 50" in first.text
    assert "Message number 00" not in first.text
    assert "page 1 of 2" in first.text
    second = await web.get("/dev/mail?page=2")
    assert second.text.count('href="/dev/mail/') == 1
    assert "Message number 00" in second.text


async def test_a_message_shows_its_html_only_inside_a_sandbox(
    web: httpx.AsyncClient, settings: Settings
) -> None:
    key = file_message(sink_of(settings), to="fp@ministry.example", subject="Invitation <to> review")
    page = await web.get(f"/dev/mail/{key}")
    assert page.status_code == 200
    assert "Invitation &lt;to&gt; review" in page.text
    for header in ["From", "To", "Subject", "Date", "Message-ID"]:
        assert f"<dt>{header}</dt>" in page.text
    assert "roundtable.test&gt;" in page.text  # the Message-ID, escaped

    (frame,) = re.findall(r"<iframe[^>]*>", page.text)
    assert 'sandbox=""' in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)  # type: ignore[union-attr]
    # The email's markup is all inside the attribute, escaped: none of it is part of this page.
    assert "&lt;script&gt;fetch(&#34;/console&#34;" in srcdoc
    assert "<script>fetch" not in page.text
    assert 'onmouseover="steal()"' not in page.text

    # The text part: escaped, with only its http(s) URLs made links.
    text = re.search(r'<pre class="mail-text">(.*?)</pre>', page.text, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert '<a href="http://testserver/t/abc123?lang=sq&amp;x=1" rel="noreferrer">' in text
    assert "x=1</a>. &lt;b&gt;not bold&lt;/b&gt;" in text  # the full stop is not part of the link
    assert "javascript:alert(1)" in text
    assert 'href="javascript' not in text
    assert "&#34;quoted&#34;" in text


def test_linkify_escapes_everything_but_the_links() -> None:
    assert str(linkify("a <b> http://x.example/t/1?a=1&b=2, 'c'")) == (
        'a &lt;b&gt; <a href="http://x.example/t/1?a=1&amp;b=2" rel="noreferrer">'
        "http://x.example/t/1?a=1&amp;b=2</a>, &#39;c&#39;"
    )
    assert str(linkify('ftp://x.example "http://y.example/"')) == (
        'ftp://x.example &#34;<a href="http://y.example/" rel="noreferrer">http://y.example/</a>&#34;'
    )


async def test_an_unknown_message_is_a_404_page(web: httpx.AsyncClient, settings: Settings) -> None:
    file_message(sink_of(settings), to="fp@ministry.example", subject="Invitation")
    for key in ["1234.M1P1Q1.nowhere", ".hidden", "..", "new"]:
        response = await web.get(f"/dev/mail/{key}")
        assert response.status_code == 404, key
        assert "<h1>" in response.text


async def test_clearing_the_mailbox_needs_the_form(web: httpx.AsyncClient, settings: Settings) -> None:
    sink = sink_of(settings)
    file_message(sink, to="a@example.org", subject="One")
    file_message(sink, to="b@example.org", subject="Two")
    refused = await web.post("/dev/mail/clear", data={})
    assert refused.status_code == 403
    inbox = await web.get("/dev/mail")
    assert "(2 messages)" in inbox.text

    cleared = await web.post("/dev/mail/clear", data={"csrf_token": csrf_of(inbox)})
    assert (cleared.status_code, cleared.headers["location"]) == (303, "/dev/mail?cleared=2")
    after = await web.get(cleared.headers["location"])
    assert "2 messages removed" in after.text
    assert "No messages yet" in after.text


async def test_there_is_no_dev_mailbox_in_production(db: Database, settings: Settings) -> None:
    production = settings.model_copy(
        update={
            "environment": Environment.production,
            "secret_key": "production-secret-" + "p" * 30,
            "public_base_url": "https://consultations.gov.example",
        }
    )
    assert len(production.secret_key) == 48
    sink_of(production)
    app = create_app(production, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    ) as client:
        for path in ["/dev/mail", "/dev/mail/anything"]:
            assert (await client.get(path)).status_code == 404, path
        assert (await client.post("/dev/mail/clear", data={})).status_code in (404, 405)
        login = await client.get("/console/login")
        assert login.status_code == 200
        assert "/dev/mail" not in login.text


async def test_real_invitations_show_up_with_their_review_links(stack: Stack, tmp_path: Path) -> None:
    """Through the real scheduler and SMTP: launch from the console, open the invitation in the viewer."""
    await create_login(stack.db, "lead@secretariat.example", Role.coordinator)
    async with app_reading_the_sink(stack) as web:
        await sign_in(web, "lead@secretariat.example")
        await import_registry(web)
        await upload_draft(web)
        created = await web.post("/console/rounds", data=round_form(await web.get("/console/rounds/new")))
        round_path = created.headers["location"].split("?")[0]
        await submit(web, round_path, f"{round_path}/launch")

        inbox = await eventually(
            lambda: web.get("/dev/mail"), lambda response: "(4 messages)" in response.text, timeout=30
        )
        keys = re.findall(r'href="/dev/mail/([^"]+)"', inbox.text)
        assert len(keys) == 4
        page = await web.get(f"/dev/mail/{keys[0]}")
        assert page.status_code == 200
        (frame,) = re.findall(r"<iframe[^>]*>", page.text)
        assert 'sandbox=""' in frame
        assert 'srcdoc="&lt;' in frame
        link = re.search(
            r'<pre class="mail-text">.*?<a href="(http://testserver/t/[^"]+)"', page.text, re.DOTALL
        )
        assert link, "no clickable review link in the text part"
        review = await web.get(link.group(1).removeprefix("http://testserver"))
        assert review.status_code == 200

"""Hostile text: a name, a title or an address with a line break, a control character or a hidden direction
character is refused, naming the field (and the line of a registry file); a comment is kept exactly as
typed, hidden direction characters included, and every page and download shows those as visible markers,
never obeying them, and a formula in it as text."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import docx
import httpx
import openpyxl
import pytest
from pydantic import ValidationError
from pypdf import PdfReader
from sqlmodel import func, select

from models.enums import Role
from models.organisations import Organisation, OrganisationCreate
from models.reviews import Comment, CommentCreate, SignOffCreate
from models.rounds import RoundCreate
from services import registry_import
from services.db import Database
from tests.harness import create_account, fixture_path
from tests.web.test_console import create_login, sign_in
from tests.web.test_registry import api, preview, registry_rows, workbook  # noqa: F401  (fixtures)
from tests.web.test_registry import desk as desk
from tests.web.test_review_page import Review, review  # noqa: F401

API = "/api/v1"
RLO, PDF_, RLI, PDI = "\u202e", "\u202c", "\u2067", "\u2069"
# A comment that would show "approve" reversed, and a formula a spreadsheet would run.
BODY = f'=HYPERLINK("http://evil.example","click") We {RLO}evorppa{PDF_} the draft.'
PROPOSED = f"Replace 4.1 with {RLI}text{PDI}."
MARKED = '=HYPERLINK("http://evil.example","click") We ⟦U+202E⟧evorppa⟦U+202C⟧ the draft.'
BADGE = "contains hidden direction characters"
REGISTRY = fixture_path("stakeholders-albania.csv").read_bytes()
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ------------------------------------------------------------------------------------ the schemas

ONE_LINE_FIELDS: list[tuple[type[Any], dict[str, Any], str]] = [
    (
        OrganisationCreate,
        {"key": "m", "kind": "ministry", "focal_point_email": "fp@m.example.org", "name_en": "M"},
        field,
    )
    for field in ("name_en", "name_sq", "focal_point_name", "alternate_name")
] + [
    (RoundCreate, {"title": "Strategy", "document_version_id": 1, "deadline": "2030-01-01T10:00:00Z"}, field)
    for field in ("title", "contact_name")
]
HOSTILE_IN_A_LINE = {
    "Ministry of Interior\r\nBcc: all@example.org": ("line_break", "U+000D"),
    "Ministry\nof Interior": ("line_break", "U+000A"),
    "Ministry\u2028of Interior": ("line_break", "U+2028"),
    "Ministry\x07": ("control_character", "U+0007"),
    "Ministry\x00": ("control_character", "U+0000"),
    f"Ministry {RLO}roiretnI": ("bidi_control", "U+202E"),
    "Ministry \u2066of\u2069": ("bidi_control", "U+2066"),
    "Ministry \u200f": ("bidi_control", "U+200F"),
}


@pytest.mark.parametrize(("model", "valid", "field"), ONE_LINE_FIELDS)
@pytest.mark.parametrize("value", HOSTILE_IN_A_LINE)
def test_a_one_line_field_refuses_line_breaks_controls_and_direction_characters(
    model: type[Any], valid: dict[str, Any], field: str, value: str
) -> None:
    kind, character = HOSTILE_IN_A_LINE[value]
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**valid, field: value})
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == ((field,), kind)
    assert character in error["msg"]


def test_addresses_signers_and_comments() -> None:
    for address in (f"fp{RLO}@m.example.org", "fp\x01@m.example.org", "fp@m.example.org\r\nBcc: x@y.org"):
        with pytest.raises(ValueError, match="not a valid email address"):
            OrganisationCreate(key="m", name_en="M", kind="ministry", focal_point_email=address)  # type: ignore[arg-type]
    for field in ("signer_name", "signer_title"):
        with pytest.raises(ValueError, match="line break"):
            SignOffCreate.model_validate(
                {"decision": "approve", "signer_name": "Arben Hoxha", "signer_title": "Director",
                 "submission_id": "s" * 10, field: "Arben\r\nHoxha"}
            )  # fmt: skip
    # A comment keeps its lines, tabs and direction characters as typed; other control characters are
    # refused (nobody types them: they come from pasting a binary).
    kept = CommentCreate(
        section_id=1, submission_id="s" * 10, body=f"{BODY}\n\tTwo", proposed_wording=PROPOSED
    )
    assert (kept.body, kept.proposed_wording) == (f"{BODY}\n\tTwo", PROPOSED)
    with pytest.raises(ValueError, match=r"control character U\+001B"):
        CommentCreate(section_id=1, submission_id="s" * 10, body="colour \x1b[31m red")


# ------------------------------------------------------------------------------------ the registry


def as_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def test_a_quoted_line_break_is_counted_as_the_file_s_lines() -> None:
    rows = registry_rows()
    # Line 3 holds a name over two lines (3 and 4); the bad address of the row after it is on line 5.
    rows[2][1] = "Ministry\r\nof Finance"
    rows[3][5] = rows[3][5].replace("@", " at ")
    registry_file = registry_import.read_registry(as_csv(rows), "r.csv")
    _records, rejected = registry_import._validate(registry_file.rows)
    assert [(entry.line, entry.reason.split(":")[0]) for entry in rejected] == [
        (3, "name_en"),
        (5, "focal_point_email"),
    ]
    assert "contains a line break (U+000D)" in rejected[0].reason


async def test_a_registry_row_with_a_line_break_in_a_name_is_refused_with_its_line(
    db: Database,
    desk: httpx.AsyncClient,
    api: tuple[httpx.AsyncClient, dict[str, str]],  # noqa: F811
) -> None:
    rows = registry_rows()
    rows[6][1] = "Ministry of Justice\r\nBcc: everyone@example.org"  # line 7
    content = as_csv(rows)

    page = await preview(desk, content)
    assert page.status_code == 422
    assert "1 row of the file is invalid; nothing was imported" in page.text
    assert "line 7: name_en: contains a line break (U+000D)" in page.text
    assert "/console/organisations/import/confirm" not in page.text

    http, token = api
    dry = await http.post(
        f"{API}/organisations/import", params={"dry_run": "true"}, files={"file": ("r.csv", content, CSV)},
        headers=token,
    )  # fmt: skip
    assert [(entry["line"], entry["reason"]) for entry in dry.json()["rejected"]] == [
        (7, "name_en: contains a line break (U+000D); this field is a single line")
    ]
    refused = await http.post(
        f"{API}/organisations/import", files={"file": ("r.csv", content, CSV)}, headers=token
    )
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        "line 7: name_en: contains a line break (U+000D); this field is a single line"
    ]

    rows = registry_rows()[:4]
    rows[2][4] = f"Arben {RLO}ahxoH"  # a focal point's name that would display reversed
    rows[3][1] = "Ministry\nof Finance"  # Alt+Enter in an Excel cell
    refused = await http.post(
        f"{API}/organisations/import", files={"file": ("r.xlsx", workbook(rows), XLSX)}, headers=token
    )
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        "line 3: focal_point_name: contains the hidden direction character U+202E, which can make the text "
        "display in another order than it is written; remove it",
        "line 4: name_en: contains a line break (U+000A); this field is a single line",
    ]
    async with db.session() as session:
        assert (await session.exec(select(func.count()).select_from(Organisation))).one() == 0


async def test_the_api_refuses_a_hostile_name_or_title_naming_the_field(
    api: tuple[httpx.AsyncClient, dict[str, str]],  # noqa: F811
) -> None:
    http, token = api
    made = await http.post(
        f"{API}/organisations",
        json={
            "key": "m",
            "name_en": "Ministry\r\nX",
            "kind": "ministry",
            "focal_point_email": "fp@m.example.org",
        },
        headers=token,
    )
    assert made.status_code == 422
    assert made.json()["problems"] == ["name_en: contains a line break (U+000D); this field is a single line"]
    draft = await http.post(
        f"{API}/documents", files={"file": ("d.md", b"## 1. One\n\n1.1 Text.\n", "text/markdown")},
        data={"title": f"Strategy {RLO}2030"}, headers=token,
    )  # fmt: skip
    assert draft.status_code == 422
    assert "title: contains the hidden direction character U+202E" in draft.json()["detail"]


# ------------------------------------------------------------------------------------ comments shown

_TEXTAREA = re.compile(r"<textarea[^>]*>(.*?)</textarea>", re.DOTALL)


def _textareas(page: str) -> tuple[list[str], str]:
    """What the page's text areas hold, and the page without them."""
    return _TEXTAREA.findall(page), _TEXTAREA.sub("", page)


async def test_a_comment_is_kept_as_typed_and_shown_with_its_direction_characters_as_markers(
    review: Review,  # noqa: F811
) -> None:
    # An objection: the report lists it in its register.
    added = await review.add_comment("4", BODY, proposed_wording=PROPOSED, weight="objection")
    assert added.status_code in (200, 303), added.text
    async with review.db.session() as session:
        stored = (await session.exec(select(Comment))).one()
    assert (stored.body, stored.proposed_wording) == (BODY, PROPOSED)

    page = await review.page()
    # Its edit form holds it exactly as stored (a marker saved back would change the comment); the
    # page shows it with markers everywhere else.
    editing, shown = _textareas(page.text)
    assert any(RLO in text for text in editing)
    assert RLO not in shown
    assert RLI not in shown
    assert "⟦U+202E⟧evorppa⟦U+202C⟧" in shown
    assert "⟦U+2067⟧text⟦U+2069⟧" in shown
    assert BADGE in shown
    assert "&#34;http://evil.example&#34;" in page.text or "&quot;http://evil.example&quot;" in page.text

    # A signer's name cannot hide one.
    signed = await review.sign_off(signer_name=f"Arben {RLO}ahxoH")
    assert signed.status_code == 422
    assert "Your full name: contains the hidden direction character U+202E" in signed.text

    token = await create_account(review.db, "reader@secretariat.example", Role.auditor)
    round_id = review.built.round_id
    listed = await review.http.get(f"{API}/rounds/{round_id}/comments", headers=token)
    (comment,) = listed.json()
    assert (comment["text"], comment["proposed_wording"], comment["has_bidi_controls"]) == (
        BODY,
        PROPOSED,
        True,
    )

    await create_login(review.db, "desk@secretariat.example", Role.coordinator)
    await sign_in(review.http, "desk@secretariat.example")
    answers = await review.http.get(f"/console/rounds/{round_id}/comments")
    assert answers.status_code == 200
    editing, shown = _textareas(answers.text)
    assert RLO not in shown
    assert "⟦U+202E⟧evorppa" in shown
    assert BADGE in shown
    # The audit view shows each event as recorded, as JSON: the character as its escape, \u202e.
    audit = await review.http.get(f"/console/audit?round_id={round_id}")
    assert audit.status_code == 200
    assert RLO not in audit.text
    assert "\\u202eevorppa" in audit.text

    # Every download: the markers, never the characters, and the formula as text.
    matrix = await review.http.get(f"{API}/rounds/{round_id}/comment-matrix.xlsx", headers=token)
    sheet = openpyxl.load_workbook(io.BytesIO(matrix.content)).active
    assert sheet is not None
    (cell,) = [cell for row in sheet.iter_rows() for cell in row if "HYPERLINK" in str(cell.value)]
    assert (cell.value, cell.data_type) == ("'" + MARKED, "s")
    assert any(
        cell.value == "Replace 4.1 with ⟦U+2067⟧text⟦U+2069⟧." for row in sheet.iter_rows() for cell in row
    )

    word = await review.http.get(f"{API}/rounds/{round_id}/comment-matrix.docx", headers=token)
    cells = [c.text for t in docx.Document(io.BytesIO(word.content)).tables for r in t.rows for c in r.cells]
    assert MARKED in cells
    report_docx = await review.http.get(f"{API}/rounds/{round_id}/report.docx", headers=token)
    document = docx.Document(io.BytesIO(report_docx.content))
    words = [c.text for t in document.tables for r in t.rows for c in r.cells] + [
        p.text for p in document.paragraphs
    ]
    assert any(MARKED in text for text in words)
    assert not any(RLO in text for text in words)
    report_html = await review.http.get(f"{API}/rounds/{round_id}/report.html", headers=token)
    assert RLO not in report_html.text
    assert "⟦U+202E⟧evorppa" in report_html.text
    report_pdf = await review.http.get(f"{API}/rounds/{round_id}/report.pdf", headers=token)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(report_pdf.content)).pages)
    assert RLO not in text
    assert re.search(r"U\+202E.?evorppa", text), text[:2000]
    assert '=HYPERLINK("http://evil.example","click")' in " ".join(text.split())

"""The comment matrix and the consultation report, downloaded as a coordinator or an auditor would and
opened with the libraries an office program reads them with: openpyxl, python-docx, pypdf."""

from __future__ import annotations

import io

import docx
import openpyxl
from pypdf import PdfReader
from sqlmodel import select

from models.enums import Role
from models.reviews import CommentUpdate, SignOff
from services import comments
from services.db import Database
from tests.conftest import Stack
from tests.web.test_answers import CLIENT, comment, sign, token_of
from tests.web.test_console import PASSWORD, create_login, sign_in
from tests.web.test_round_changes import INTERIOR, TIRANE_COUNTER, launched_round

HEADERS = [
    "No.",
    "Section",
    "Paragraph",
    "Organisation",
    "Role",
    "Type",
    "Weight",
    "Comment",
    "Proposed wording",
    "Response",
    "Justification",
    "New wording",
    "Status",
]
# Comments are stripped of leading white space, so a tab or CR cannot start one that comes through the
# review page; tests/services/test_comment_matrix.py stores those directly.
HOSTILE = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2", "@SUM(A1:A9)"]
ALBANIAN = "Neni 12 bie ndesh me ligjin për të huajt; ç'do bëhet?"
LONG = ("Bashkia kërkon që çdo sportel të ketë një punonjës të trajnuar. " * 290) + "FUNDI I KOMENTIT."
REASON = "The Law on Local Self-Government leaves opening hours to each municipality."
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


async def _edit(db: Database, token: str, comment_id: int, body: str) -> None:
    async with db.write_session() as session:
        await comments.edit_comment(
            session, token=token, comment_id=comment_id, data=CommentUpdate(body=body), client=CLIENT
        )


async def _withdraw(db: Database, token: str, comment_id: int) -> None:
    async with db.write_session() as session:
        await comments.withdraw_comment(session, token=token, comment_id=comment_id, client=CLIENT)


async def _signed_hashes(db: Database, round_id: int) -> list[str]:
    async with db.session() as session:
        sign_offs = (await session.exec(select(SignOff).where(SignOff.round_id == round_id))).all()
    return [section["sha256"] for sign_off in sign_offs for section in sign_off.sections]


async def _seeded_round(stack: Stack) -> dict[str, int]:
    """Two organisations: the Ministry of Interior (approver) objects, in Albanian, and signs "object";
    Tirana (consulted) comments hostile-looking texts, a very long one, edits one and withdraws one, and
    does not sign off. Three comments rejected with one reason, one accepted: published; one noted: draft."""
    round_id = await launched_round(stack)
    interior = token_of(stack, INTERIOR, "konsultim")
    tirane = token_of(stack, TIRANE_COUNTER, "konsultim")
    objection = await comment(stack.db, interior, ALBANIAN, weight="objection")
    hostile = [await comment(stack.db, tirane, text) for text in HOSTILE]
    long = await comment(stack.db, tirane, LONG, weight="objection")
    edited = await comment(stack.db, tirane, "First wording.")
    await _edit(stack.db, tirane, edited, "Second wording, after a second look.")
    withdrawn = await comment(stack.db, tirane, "Withdrawn later.")
    await _withdraw(stack.db, tirane, withdrawn)
    rejected = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses",
        # the same reason typed twice differently is one reason in the report
        json={"comment_ids": hostile[:2], "response": "rejected", "justification": REASON},
        headers=stack.coordinator,
    )
    assert rejected.status_code == 200, rejected.text
    again = await stack.http.put(
        f"/api/v1/comments/{hostile[2]}/response",
        json={
            "response": "rejected",
            "justification": "  the law on local self-government leaves opening hours to each municipality  ",
        },
        headers=stack.coordinator,
    )
    assert again.status_code == 200, again.text
    accepted = await stack.http.put(
        f"/api/v1/comments/{objection}/response",
        json={"response": "accepted", "justification": "", "new_wording": "Neni 12 ndjek ligjin."},
        headers=stack.coordinator,
    )
    assert accepted.status_code == 200, accepted.text
    published = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses/publish", headers=stack.coordinator
    )
    assert published.status_code == 200, published.text
    noted = await stack.http.put(
        f"/api/v1/comments/{hostile[3]}/response",
        json={"response": "noted", "justification": ""},
        headers=stack.coordinator,
    )  # a draft, not published
    assert noted.status_code == 200, noted.text
    await sign(stack.db, interior, "object", statement="Neni 12.")
    return {"round_id": round_id, "long": long}


async def test_the_comment_matrix_holds_every_comment_with_what_became_of_it(stack: Stack) -> None:
    seeded = await _seeded_round(stack)
    round_id = seeded["round_id"]

    xlsx = await stack.http.get(f"/api/v1/rounds/{round_id}/comment-matrix.xlsx", headers=stack.auditor)
    assert xlsx.status_code == 200, xlsx.text
    assert xlsx.headers["content-type"] == XLSX
    assert (
        xlsx.headers["content-disposition"] == f'attachment; filename="round-{round_id}-comment-matrix.xlsx"'
    )
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    assert str(sheet["A1"].value).startswith("Comment matrix: Migration strategy, round 1")
    assert "(draft)" in str(sheet["A2"].value)  # the note says drafts are in, marked
    assert sheet.freeze_panes == "A4"
    assert all(cell.font.bold for cell in sheet[3])
    rows = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=3)]
    assert rows[0] == HEADERS
    body = rows[1:]
    assert len(body) == 1 + len(HOSTILE) + 3  # every comment, the withdrawn one too
    assert [row[0] for row in body] == [str(number) for number in range(1, len(body) + 1)]
    by_text = {row[7]: row for row in body}

    objection_row = by_text[ALBANIAN]
    assert objection_row[1:7] == ["4", None, "Ministry of Interior", "approver", "general", "objection"]
    assert objection_row[8:13] == [None, "Accepted", None, "Neni 12 ndjek ligjin.", "as submitted"]
    for text in HOSTILE:
        row = by_text["'" + text]  # neutralised: shown as text, never run as a formula
        assert row[3:5] == ["Municipality of Tiranë", "consulted"]
    for cells in sheet.iter_rows(min_row=4):
        for cell in cells:
            if cell.value is not None:  # text, never a formula ("f") nor a number
                assert cell.data_type == "s", (cell.coordinate, cell.value)
            assert cell.alignment.wrap_text
    assert by_text["'" + HOSTILE[0]][9:11] == ["Rejected", REASON]
    assert by_text["'" + HOSTILE[3]][9] == "Noted (draft)"
    assert by_text[LONG][6] == "objection"  # the very long one whole
    assert by_text["Second wording, after a second look."][12] == "edited (revision 2)"
    assert by_text["Withdrawn later."][12] == "withdrawn by its author"

    word = await stack.http.get(f"/api/v1/rounds/{round_id}/comment-matrix.docx", headers=stack.coordinator)
    assert word.status_code == 200
    assert word.headers["content-type"] == DOCX
    assert 'filename="round-' in word.headers["content-disposition"]
    document = docx.Document(io.BytesIO(word.content))
    assert document.sections[0].page_width > document.sections[0].page_height  # landscape
    table = document.tables[0]
    assert [cell.text for cell in table.rows[0].cells] == HEADERS
    assert len(table.rows) == 1 + len(body)
    cells = {row.cells[7].text: [cell.text for cell in row.cells] for row in table.rows[1:]}
    assert cells[HOSTILE[0]][9:11] == ["Rejected", REASON]  # Word runs no formulas: the text as typed
    assert cells[ALBANIAN][3] == "Ministry of Interior"
    assert cells[LONG][7].endswith("FUNDI I KOMENTIT.")
    assert cells["Withdrawn later."][12] == "withdrawn by its author"
    assert cells[HOSTILE[3]][9] == "Noted (draft)"


async def test_the_consultation_report_counts_names_and_hashes_what_was_signed(stack: Stack) -> None:
    seeded = await _seeded_round(stack)
    round_id = seeded["round_id"]
    hashes = await _signed_hashes(stack.db, round_id)
    assert hashes

    pdf = await stack.http.get(f"/api/v1/rounds/{round_id}/report.pdf", headers=stack.auditor)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert (
        pdf.headers["content-disposition"]
        == f'attachment; filename="round-{round_id}-consultation-report.pdf"'
    )
    pages = PdfReader(io.BytesIO(pdf.content)).pages
    text = "\n".join(page.extract_text() for page in pages)
    flat = " ".join(text.split())
    assert f"Page 1 of {len(pages)}" in flat
    assert "2 organisations were consulted." in flat
    assert "1 organisations answered (signed off); 1 did not." in flat
    assert "recorded as not having responded" in flat  # what silence meant
    assert "Accepted: 1; Partly accepted: 0; Rejected: 3; Noted: 0." in flat
    assert "Not answered yet (or answer not published): 3." in flat  # the draft, the long one, the edited one
    assert REASON in flat
    assert flat.count("leaves opening hours") == 1
    assert "The draft is not cleared." in flat
    assert "Ministry of Interior objects to the draft." in flat
    assert ALBANIAN in flat  # the objection register, ë and ç intact
    assert "FUNDI I KOMENTIT." in flat  # a row taller than a page is set out, not cut or refused
    for sha in hashes:
        assert sha in flat

    report = await stack.http.get(f"/api/v1/rounds/{round_id}/report.docx", headers=stack.auditor)
    assert report.status_code == 200
    assert report.headers["content-type"] == DOCX
    document = docx.Document(io.BytesIO(report.content))
    words = "\n".join(p.text for p in document.paragraphs)
    assert "Accepted: 1; Partly accepted: 0; Rejected: 3; Noted: 0." in words
    assert "1 organisations answered (signed off); 1 did not." in words
    table_cells = [[cell.text for cell in row.cells] for table in document.tables for row in table.rows]
    assert ["Ministry of Interior", "approver", "signed off", "object", "1"] in table_cells
    assert ["Municipality of Tiranë", "consulted", "commenting", "none", "6"] in table_cells
    reason_row = next(row for row in table_cells if row[0] == REASON)
    assert reason_row[1] == "3"
    assert reason_row[2].startswith("Municipality of Tiranë: no. ")
    assert {sha for row in table_cells for sha in row} >= set(hashes)

    html = await stack.http.get(f"/api/v1/rounds/{round_id}/report.html", headers=stack.auditor)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "attachment" in html.headers["content-disposition"]
    assert "Reasons for rejection" in html.text
    assert "bëhet" in html.text
    assert "<script" not in html.text


async def test_the_console_shows_the_report_and_offers_the_downloads(stack: Stack) -> None:
    seeded = await _seeded_round(stack)
    round_id = seeded["round_id"]
    await create_login(stack.db, "desk@secretariat.example", Role.coordinator)
    await sign_in(stack.http, "desk@secretariat.example", PASSWORD)

    page = await stack.http.get(f"/console/rounds/{round_id}/report")
    assert page.status_code == 200, page.text
    assert "<h1>Consultation report</h1>" in page.text
    for heading in ("Who answered", "Reasons for rejection", "Objections", "Clearance", "The texts signed"):
        assert f">{heading}</h2>" in page.text
    assert "Rejected: 3" in page.text
    for sha in await _signed_hashes(stack.db, round_id):
        assert sha in page.text
    downloads = {
        "report.pdf": "application/pdf",
        "report.docx": DOCX,
        "report.html": "text/html; charset=utf-8",
        "comment-matrix.xlsx": XLSX,
        "comment-matrix.docx": DOCX,
    }
    for name, media_type in downloads.items():
        path = f"/console/rounds/{round_id}/{name}"
        assert f'href="{path}"' in page.text
        file = await stack.http.get(path)
        assert file.status_code == 200, (name, file.text[:300])
        assert file.headers["content-type"] == media_type
        assert file.headers["content-disposition"].startswith("attachment; filename=")

    missing = await stack.http.get("/console/rounds/424242/report")
    assert missing.status_code == 404


async def test_downloads_are_for_signed_in_readers_and_an_unknown_round_is_a_json_404(stack: Stack) -> None:
    round_id = await launched_round(stack)
    for name in ("comment-matrix.xlsx", "comment-matrix.docx", "report.pdf", "report.docx", "report.html"):
        empty = await stack.http.get(f"/api/v1/rounds/{round_id}/{name}", headers=stack.auditor)
        assert empty.status_code == 200, (name, empty.text[:300])  # a round without comments yet
        missing = await stack.http.get(f"/api/v1/rounds/424242/{name}", headers=stack.auditor)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/json")
        assert "424242" in missing.text or "not found" in missing.text.lower()
        anonymous = await stack.http.get(f"/api/v1/rounds/{round_id}/{name}")
        assert anonymous.status_code == 401
    pdf = await stack.http.get(f"/api/v1/rounds/{round_id}/report.pdf", headers=stack.auditor)
    flat = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages).split())
    assert "No comment was rejected." in flat
    assert "No sign-off yet." in flat

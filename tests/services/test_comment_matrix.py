"""What the comment matrix writes into a cell: formulas neutralised, characters XML cannot hold replaced,
a text longer than Excel holds cut and marked; and the report's PDF in either font, whatever the text."""

import io
from datetime import timedelta

import openpyxl
import pytest
from pypdf import PdfReader
from sqlmodel import select

from models.documents import Section
from models.enums import ContactRole, ResponseKind
from models.responses import CommentResponse
from models.reviews import AccessLink, Comment
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import consultation_report, report_documents
from services.comment_matrix import EXCEL_CELL_LIMIT, HEADERS, Matrix, build, neutralised, to_docx, to_xlsx
from services.db import Database
from tests.harness import seed_round


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tTabbed", "'\tTabbed"),
        ("\rReturned", "'\rReturned"),
        ("Plain text", "Plain text"),
        ("Shkëmbim i të dhënave", "Shkëmbim i të dhënave"),
        ("a\x00b\x0bc", "a\ufffdb\ufffdc"),
        ("y" * 40_000, "y" * (EXCEL_CELL_LIMIT - 6) + " [...]"),
    ],
)
def test_a_cell_is_text_a_spreadsheet_never_evaluates(typed: str, written: str) -> None:
    assert neutralised(typed) == written


def test_every_cell_of_the_sheet_is_a_string_and_both_files_open() -> None:
    row = (
        "1",
        "4",
        "",
        "Bashkia Tiranë",
        "consulted",
        "general",
        "remark",
        "=2+3\x01",
        "",
        "",
        "",
        "",
        "as submitted",
    )
    matrix = Matrix(round_id=7, title="=Round", generated_at=utcnow(), rows=[row])
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(matrix))).active
    assert sheet is not None
    assert str(sheet["A1"].value).startswith("Comment matrix: =Round")
    assert [cell.value for cell in sheet[3]] == list(HEADERS)
    assert sheet["H4"].value == "'=2+3\ufffd"
    assert sheet["H4"].data_type in {"s", "inlineStr"}
    assert to_docx(matrix)[:2] == b"PK"


async def _round_with_comments(db: Database, bodies: list[str]) -> int:
    """A round of the fixture registry with comments stored as they are (the review page strips leading
    white space; a comment imported or stored before that rule may still start with a tab)."""
    round_id = await seed_round(db, deadline=utcnow() + timedelta(days=30))
    async with db.write_session() as session:
        round_ = await session.get(Round, round_id)
        assert round_ is not None
        task = (await session.exec(select(ReviewTask).where(ReviewTask.round_id == round_id))).first()
        section = (
            await session.exec(
                select(Section).where(Section.document_version_id == round_.document_version_id)
            )
        ).first()
        assert task is not None
        assert task.id is not None
        assert section is not None
        assert section.id is not None
        session.add(
            AccessLink(
                id="link-1",
                task_id=task.id,
                round_id=round_id,
                role=ContactRole.focal_point,
                email="a@x.example",
            )
        )
        await session.flush()
        for number, body in enumerate(bodies):
            stored = Comment(
                round_id=round_id,
                task_id=task.id,
                section_id=section.id,
                body=body,
                author_link_id="link-1",
                author_email="a@x.example",
                submission_id=f"submission-{number}",
            )
            session.add(stored)
            await session.flush()
            assert stored.id is not None
            session.add(
                CommentResponse(
                    comment_id=stored.id,
                    round_id=round_id,
                    comment_revision=1,
                    response=ResponseKind.rejected,
                    justification="=" + body if number % 2 else "Jo në fushën e ligjit.",
                    published_at=utcnow() if number % 3 else None,
                )
            )
        await session.commit()
    return round_id


async def test_a_stored_comment_starting_with_a_tab_or_a_return_is_text_in_the_sheet(db: Database) -> None:
    bodies = ["\tTabbed =1+1", "\rReturned", '=HYPERLINK("http://x.example")', "Çdo bashki ë", "x" * 20_000]
    round_id = await _round_with_comments(db, bodies)
    async with db.session() as session:
        matrix = await build(session, round_id=round_id)
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(matrix))).active
    assert sheet is not None
    column = {cell.value: cell for cell in sheet["H"][3:]}
    assert set(column) == {
        "'\tTabbed =1+1",
        "'\rReturned",
        '\'=HYPERLINK("http://x.example")',
        "Çdo bashki ë",
        "x" * 20_000,
    }
    for cell in column.values():
        assert cell.data_type == "s"
    justifications = [cell.value for cell in sheet["K"][3:]]
    assert "'=\rReturned" in justifications  # every column, not just the comment's
    responses = [cell.value for cell in sheet["J"][3:]]
    assert responses.count("Rejected (draft)") == 2  # numbers 0 and 3 were not published


async def test_the_report_pdf_takes_any_text_in_either_font(db: Database) -> None:
    exotic = "Çdo bashki ë “citim” — Ђ 中文 \U0001f600"
    round_id = await _round_with_comments(db, ["Tjetër", exotic])  # the second answer is published
    async with db.session() as session:
        report = await consultation_report.build(session, round_id=round_id)
    assert [reason.reason for reason in report.rejection_reasons] == ["=" + exotic]
    shown = {
        # DejaVu Sans has Cyrillic and some emoji, not Chinese; Helvetica has Windows-1252 only
        report_documents.UNICODE_FONT: "=Çdo bashki ë “citim” — Ђ ?? \U0001f600",
        None: "=Çdo bashki ë “citim” — ? ?? ?",
    }
    if not report_documents.UNICODE_FONT.is_file():
        shown[report_documents.UNICODE_FONT] = shown[None]  # a machine without fonts-dejavu-core
    for font, text in shown.items():
        pdf = report_documents.to_pdf(report, font=font)
        extracted = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
        assert "Rejected: 1" in extracted
        assert text in extracted

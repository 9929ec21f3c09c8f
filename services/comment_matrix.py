"""The comment matrix: every comment of a round with what became of it, as governments keep it, in a
spreadsheet (XLSX) and a Word table (DOCX).

Edited and withdrawn comments are marked, never left out. Answers not yet published are included for the
coordinator and marked as drafts. A cell that a spreadsheet program would read as a formula (text starting
with = + - @, a tab or a carriage return) is written with a leading apostrophe, as text. Hidden direction
characters in a comment (kept as typed) are written as visible markers (⟦U+202E⟧), never obeyed.
"""

from __future__ import annotations

import copy
import io
import re
from dataclasses import dataclass
from datetime import datetime

from docx import Document as WordDocument
from docx.enum.section import WD_ORIENT
from docx.oxml.ns import qn
from docx.shared import Cm, Pt
from docx.table import _Cell
from openpyxl import Workbook
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Font
from sqlmodel.ext.asyncio.session import AsyncSession

from models.responses import RoundCommentRead
from models.text import visible_bidi
from models.types import utcnow
from services import responses
from services.rounds import get_round_row

HEADERS = (
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
)
WIDTHS = (6, 10, 10, 30, 11, 13, 11, 60, 45, 18, 50, 45, 24)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
RESPONSE_TEXT = {
    "accepted": "Accepted",
    "partially_accepted": "Partly accepted",
    "rejected": "Rejected",
    "noted": "Noted",
}


# Characters XML 1.0 cannot hold (both formats are XML inside): a comment pasted from anywhere may have them.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def printable(value: str) -> str:
    """The text as a document shows it: what XML cannot hold replaced, direction controls as markers."""
    return visible_bidi(_NOT_IN_XML.sub("\ufffd", value))


EXCEL_CELL_LIMIT = 32_767
"""Characters Excel holds in a cell; a longer text is cut there, marked, rather than the file refused."""
CUT = " [...]"


def neutralised(value: str) -> str:
    """Text a spreadsheet shows as text, never evaluates, and that fits in one of its cells."""
    value = printable(value)
    value = "'" + value if value.startswith(FORMULA_STARTS) else value
    return value if len(value) <= EXCEL_CELL_LIMIT else value[: EXCEL_CELL_LIMIT - len(CUT)] + CUT


@dataclass(frozen=True)
class Matrix:
    round_id: int
    title: str
    generated_at: datetime
    rows: list[tuple[str, ...]]


def _status(comment: RoundCommentRead) -> str:
    parts = []
    if comment.status == "withdrawn":
        parts.append("withdrawn by its author")
    if comment.revision > 1:
        parts.append(f"edited (revision {comment.revision})")
    if comment.response is not None and comment.response.stale:
        parts.append("edited after the answer")
    return "; ".join(parts) or "as submitted"


def _row(number: int, comment: RoundCommentRead) -> tuple[str, ...]:
    answer = comment.response
    response = ""
    if answer is not None:
        response = RESPONSE_TEXT[str(answer.response)] + ("" if answer.published_at else " (draft)")
    return (
        str(number),
        comment.section,
        comment.paragraph or "",
        comment.organisation_name,
        str(comment.role),
        comment.type,
        comment.weight,
        comment.text,
        comment.proposed_wording or "",
        response,
        answer.justification if answer is not None else "",
        (answer.new_wording or "") if answer is not None else "",
        _status(comment),
    )


async def build(session: AsyncSession, *, round_id: int) -> Matrix:
    round_ = await get_round_row(session, round_id=round_id)
    listed = await responses.list_round_comments(session, round_id=round_id)
    return Matrix(
        round_id=round_id,
        title=round_.title,
        generated_at=utcnow(),
        rows=[_row(number, comment) for number, comment in enumerate(listed, start=1)],
    )


def _title(matrix: Matrix) -> str:
    return (
        f"Comment matrix: {matrix.title} (round {matrix.round_id}), {matrix.generated_at:%d %B %Y %H:%M} UTC"
    )


def to_xlsx(matrix: Matrix) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Comment matrix"
    sheet.append([neutralised(_title(matrix))])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append([f"{len(matrix.rows)} comments. Answers marked (draft) are not yet published."])
    sheet.append(list(HEADERS))
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for row in matrix.rows:
        sheet.append([neutralised(value) or None for value in row])  # an empty cell stays empty
    for cells in sheet.iter_rows(min_row=4):
        for cell in cells:
            assert isinstance(cell, Cell)
            if cell.value is not None:
                cell.data_type = "s"  # text, whatever it looks like
            cell.alignment = wrap
    for index, width in enumerate(WIDTHS, start=1):
        sheet.column_dimensions[sheet.cell(row=3, column=index).column_letter].width = width
    sheet.freeze_panes = "A4"
    sheet.auto_filter.ref = f"A3:{sheet.cell(row=3, column=len(HEADERS)).column_letter}{3 + len(matrix.rows)}"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def to_docx(matrix: Matrix) -> bytes:
    document = WordDocument()
    section = document.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = section.page_height, section.page_width
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(1.2))
    document.add_heading(printable(_title(matrix)), level=1)
    document.add_paragraph(f"{len(matrix.rows)} comments. Answers marked (draft) are not yet published.")
    table = document.add_table(rows=1, cols=len(HEADERS))
    table.style = document.styles["Table Grid"]
    table.style.font.size = Pt(8)
    for cell, header in zip(table.rows[0].cells, HEADERS, strict=True):
        cell.text = header
        for run in cell.paragraphs[0].runs:
            run.font.bold = True
    # Rows are copies of one row made by python-docx, their texts set in the XML: making each of
    # thousands of cells through python-docx's objects took seconds. A text with line breaks or tabs
    # is set through python-docx, which writes them as Word's breaks and tabs.
    prototype = table.add_row()
    for tc in prototype._tr.tc_lst:
        _Cell(tc, table).text = "-"
    row_xml = prototype._tr
    table._tbl.remove(row_xml)
    for row in matrix.rows:
        added = copy.deepcopy(row_xml)
        table._tbl.append(added)
        for tc, value in zip(added.tc_lst, row, strict=True):
            text = printable(value)
            if "\n" in text or "\t" in text or "\r" in text:
                _Cell(tc, table).text = text
                continue
            (run_text,) = tc.iter(qn("w:t"))
            run_text.text = text
            run_text.set(qn("xml:space"), "preserve")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()

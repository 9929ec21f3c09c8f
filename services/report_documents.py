"""The consultation report as a Word document and a PDF: the same sections, in the same order, as the
console's HTML page. Bytes out; `consultation_report` says what is in it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from docx import Document as WordDocument
from docx.shared import Pt
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import TTFFont

from services.comment_matrix import printable
from services.consultation_report import Report
from services.formatting import when_text

RESPONSE_NAMES = {
    "accepted": "Accepted",
    "partially_accepted": "Partly accepted",
    "rejected": "Rejected",
    "noted": "Noted",
}


Part = tuple[str, list[str], Sequence[Sequence[str]]]
"""A part of the report: its heading, its paragraphs, its table (the first row the headers), maybe none."""


def _label(value: str) -> str:
    return value.replace("_", " ")


def sections_of(report: Report) -> list[Part]:
    """(heading, paragraphs, table rows with the first row as headers) for each part of the report."""
    when = lambda moment: when_text(moment, timezone=report.timezone) if moment else "not yet"  # noqa: E731
    parts: list[Part] = []
    parts.append(
        (
            "Purpose and period",
            [
                report.purpose or "No purpose was recorded for this round.",
                f"Procedure: {report.procedure}. Status: {_label(report.status)}.",
                f"Launched {when(report.launched_at)}; deadline {when(report.deadline)}; "
                f"{report.period_working_days} working days.",
                f"Closed {when(report.closed_at)}." if report.closed_at else "The round is not closed.",
            ],
            [],
        )
    )
    parts.append(
        (
            "Who was consulted",
            [f"{len(report.participants)} organisations were consulted."],
            [("Kind", "Role", "Organisations")]
            + [
                (_label(kind), role, str(count))
                for (kind, role), count in report.consulted_by_kind_and_role.items()
            ],
        )
    )
    parts.append(
        (
            "Who answered",
            [
                f"{report.answered} organisations answered (signed off); {report.not_answered} did not.",
                report.silence_text,
            ],
            [("Organisation", "Role", "Status", "Decision", "Comments")]
            + [
                (p.name, p.role, _label(p.status), _label(p.decision) or "none", str(p.comments))
                for p in report.participants
            ],
        )
    )
    parts.append(
        (
            "Decisions",
            [f"{_label(decision).capitalize()}: {count}." for decision, count in report.decisions.items()]
            or ["No organisation has signed off yet."],
            [],
        )
    )
    parts.append(
        (
            "Comments",
            [
                f"{report.comments_total} comments ({report.comments_withdrawn} more were withdrawn by their "
                "authors).",
                "By type: "
                + (", ".join(f"{_label(k)} {v}" for k, v in report.by_type.items()) or "none")
                + ".",
                "By weight: " + (", ".join(f"{k} {v}" for k, v in report.by_weight.items()) or "none") + ".",
            ],
            [("Section", "Comments")]
            + [(section, str(count)) for section, count in report.by_section.items()],
        )
    )
    parts.append(
        (
            "What became of the comments",
            [
                "; ".join(f"{RESPONSE_NAMES[kind]}: {count}" for kind, count in report.responses.items())
                + ".",
                f"Not answered yet (or answer not published): {report.unanswered_comments}.",
            ],
            [],
        )
    )
    parts.append(
        (
            "Reasons for rejection",
            [] if report.rejection_reasons else ["No comment was rejected."],
            [("Reason", "Comments", "Which (numbers as in the comment matrix)")]
            + [
                (reason.reason, str(len(reason.comments)), reason.answered)
                for reason in report.rejection_reasons
            ]
            if report.rejection_reasons
            else [],
        )
    )
    parts.append(
        (
            "Objections",
            [] if report.objections else ["No objection was raised."],
            [("Organisation", "Section", "Objection", "State")]
            + [(o.organisation_name, o.section, o.text, o.state) for o in report.objections]
            if report.objections
            else [],
        )
    )
    clearance = report.clearance
    parts.append(
        (
            "Clearance",
            ["The draft is cleared: every approver approved and no objection stands."]
            if clearance.cleared
            else ["The draft is not cleared.", *clearance.blocking],
            [],
        )
    )
    parts.append(
        (
            "Sign-offs",
            [] if report.sign_offs else ["No sign-off yet."],
            [("Organisation", "Signed by", "Decision", "When", "Sections signed")]
            + [
                (
                    s.organisation_name,
                    f"{s.signer_name}, {s.signer_title}",
                    _label(str(s.decision)),
                    when(s.signed_at),
                    ", ".join(section["number"] for section in s.sections),
                )
                for s in report.sign_offs
            ]
            if report.sign_offs
            else [],
        )
    )
    everyone = len(report.sign_offs)
    parts.append(
        (
            "The texts signed",
            [
                "Each section's text as signed, by the SHA-256 of its Markdown (from its heading line to the"
                " next, as UTF-8, line endings \\n, trailing blank space removed): anyone holding the text"
                " can check that it is the one signed."
            ]
            if report.texts_signed
            else ["No text has been signed yet."],
            [("Section", "Heading", "SHA-256", "Signed by")]
            + [
                (
                    text.number,
                    text.heading,
                    text.sha256,
                    f"all {everyone} sign-offs"
                    if len(text.signed_by) == everyone > 1
                    else ", ".join(text.signed_by),
                )
                for text in report.texts_signed
            ]
            if report.texts_signed
            else [],
        )
    )
    return parts


def title_of(report: Report) -> str:
    return f"Consultation report: {report.title}"


def to_docx(report: Report) -> bytes:
    document = WordDocument()
    document.add_heading(printable(title_of(report)), level=0)
    document.add_paragraph(
        f"Round {report.round_id}. Generated {when_text(report.generated_at, timezone=report.timezone)}."
    )
    for heading, paragraphs, rows in sections_of(report):
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(printable(paragraph))
        if rows:
            table = document.add_table(rows=0, cols=len(rows[0]))
            table.style = "Table Grid"
            for index, row in enumerate(rows):
                cells = table.add_row().cells
                for cell, value in zip(cells, row, strict=True):
                    cell.text = printable(value)
                    for run in cell.paragraphs[0].runs:
                        run.font.size = Pt(8)
                        run.font.bold = index == 0
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


LINE = 3.6
"""Line height (mm) in the PDF's tables, at 7 pt."""
UNICODE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
"""Used when the machine has it (Debian's fonts-dejavu-core); otherwise the PDF's built-in Helvetica."""


class _ReportPdf(FPDF):
    """A4 landscape with "Page N of M" at the foot of every page, in DejaVu Sans when the machine has it
    (most of Unicode), otherwise in the built-in Helvetica (Windows-1252: Latin-1, which has Albanian's ë
    and ç, and the typographic quotes and dashes). A character the font cannot show becomes "?"."""

    def __init__(self, *, font: Path | None) -> None:
        super().__init__(orientation="landscape", format="A4")
        self.glyphs: frozenset[int] | None = None
        self.body_font = "Helvetica"
        bold = font.with_name(font.stem + "-Bold.ttf") if font is not None else None
        if font is not None and bold is not None and font.is_file() and bold.is_file():
            self.add_font("Body", "", str(font))
            self.add_font("Body", "B", str(bold))
            self.body_font = "Body"
            glyphs = [
                set(f.cmap) for f in (self.fonts["body"], self.fonts["bodyB"]) if isinstance(f, TTFFont)
            ]
            self.glyphs = frozenset(set.intersection(*glyphs))
        else:
            self.core_fonts_encoding = "windows-1252"

    def clean(self, text: str) -> str:
        text = printable(text).replace("\ufffd", "?")
        if self.glyphs is None:
            return text.encode("windows-1252", "replace").decode("windows-1252")
        return "".join(char if ord(char) in self.glyphs or char in "\n\t" else "?" for char in text)

    def use(self, size: float, *, bold: bool = False) -> None:
        self.set_font(self.body_font, style="B" if bold else "", size=size)

    def footer(self) -> None:
        self.set_y(-12)
        self.use(8)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")

    def paragraph(self, text: str, *, size: float = 9, height: float = 5, bold: bool = False) -> None:
        self.use(size, bold=bold)
        self.multi_cell(0, height, self.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def widths(self, rows: Sequence[Sequence[str]]) -> list[float]:
        """Column widths (mm) that fit each column's longest word (a SHA-256 stays on one line) and share
        what is left by how long its texts run."""
        room = self.epw
        need, want = [], []
        for column in zip(*rows, strict=True):
            longest = max((self.get_string_width(w) for value in column for w in value.split()), default=0)
            typical = sum(self.get_string_width(value) for value in column) / len(column)
            need.append(min(longest + 3, room / 2))
            want.append(max(min(typical + 3, room * 0.6), need[-1]))
        if sum(want) <= room:
            return [width * room / sum(want) for width in want]
        if sum(need) >= room:
            return [width * room / sum(need) for width in need]
        share = (room - sum(need)) / (sum(want) - sum(need))
        return [low + (high - low) * share for low, high in zip(need, want, strict=True)]

    def _height(self, row: Sequence[str], widths: Sequence[float]) -> float:
        """A generous estimate of the row's height (mm), from its texts' widths: measuring it exactly (a
        dry run of the line breaking) costs as much as setting it."""
        return LINE * max(
            value.count("\n") + 1 + 1.2 * self.get_string_width(value) / max(width - 2, 1)
            for value, width in zip(row, widths, strict=True)
        )

    def rows(self, rows: Sequence[Sequence[str]]) -> None:
        """A table, its headings repeated on each page. fpdf2 cannot break a row across pages, so a row too
        tall for most of a page (a very long comment) is set out as labelled paragraphs between tables."""
        self.use(7)
        cleaned = [tuple(self.clean(value) for value in row) for row in rows]
        headings, body = cleaned[0], cleaned[1:]
        widths = self.widths(cleaned)
        tall = (self.h - self.t_margin - self.b_margin) * 0.6
        start = 0
        while start < len(body):
            stop = start
            while stop < len(body) and self._height(body[stop], widths) <= tall:
                stop += 1
            if stop > start:
                self.use(7)
                with self.table(
                    text_align="LEFT", line_height=LINE, first_row_as_headings=True, col_widths=widths
                ) as table:
                    for row in (headings, *body[start:stop]):
                        cells = table.row()
                        for value in row:
                            cells.cell(value)
            if stop < len(body):
                self.ln(2)
                for heading, value in zip(headings, body[stop], strict=True):
                    self.use(7, bold=True)
                    self.multi_cell(0, LINE, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                    self.use(7)
                    self.multi_cell(0, LINE, value or "-", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                self.ln(2)
                stop += 1
            start = stop


def to_pdf(report: Report, *, font: Path | None = UNICODE_FONT) -> bytes:
    pdf = _ReportPdf(font=font)
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.paragraph(title_of(report), size=15, height=7, bold=True)
    generated = when_text(report.generated_at, timezone=report.timezone)
    pdf.paragraph(f"Round {report.round_id}. Generated {generated}.")
    for heading, paragraphs, rows in sections_of(report):
        pdf.ln(3)
        pdf.paragraph(heading, size=12, height=6, bold=True)
        for paragraph in paragraphs:
            pdf.paragraph(paragraph)
        if rows:
            pdf.rows(rows)
    return bytes(pdf.output())

"""The round's downloads as HTTP responses, for the API and the console alike: the comment matrix and the
consultation report, built in one read session each."""

from __future__ import annotations

from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlmodel.ext.asyncio.session import AsyncSession

from services import comment_matrix, consultation_report, report_documents

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = "application/pdf"


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    return Response(
        content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


async def matrix(session: AsyncSession, *, round_id: int, file_format: str) -> Response:
    built = await comment_matrix.build(session, round_id=round_id)
    name = f"round-{round_id}-comment-matrix.{file_format}"
    if file_format == "xlsx":
        return _attachment(comment_matrix.to_xlsx(built), XLSX, name)
    return _attachment(comment_matrix.to_docx(built), DOCX, name)


async def report(
    session: AsyncSession, *, round_id: int, file_format: str, templates: Jinja2Templates
) -> Response:
    built = await consultation_report.build(session, round_id=round_id)
    name = f"round-{round_id}-consultation-report.{file_format}"
    if file_format == "pdf":
        return _attachment(report_documents.to_pdf(built), PDF, name)
    if file_format == "docx":
        return _attachment(report_documents.to_docx(built), DOCX, name)
    html = templates.get_template("report_document.html").render(
        title=report_documents.title_of(built), report=built, sections=report_documents.sections_of(built)
    )
    return _attachment(html.encode(), "text/html; charset=utf-8", name)

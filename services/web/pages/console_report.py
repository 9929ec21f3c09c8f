"""The console's consultation report page and the round's downloads, behind the session cookie."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services import consultation_report, report_documents
from services.web import downloads
from services.web.deps import ConsolePage, IdPath, ReadSession, Templates
from services.web.routes import ConsoleRoute

router = APIRouter(prefix="/console/rounds", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/{round_id}/report")
async def report_page(page: ConsolePage, session: ReadSession, round_id: IdPath) -> Response:
    built = await consultation_report.build(session, round_id=round_id)
    return page.render(
        "console/report.html",
        {"nav": "rounds", "report": built, "sections": report_documents.sections_of(built)},
    )


@router.get("/{round_id}/comment-matrix.xlsx")
async def comment_matrix_xlsx(session: ReadSession, round_id: IdPath) -> Response:
    return await downloads.matrix(session, round_id=round_id, file_format="xlsx")


@router.get("/{round_id}/comment-matrix.docx")
async def comment_matrix_docx(session: ReadSession, round_id: IdPath) -> Response:
    return await downloads.matrix(session, round_id=round_id, file_format="docx")


@router.get("/{round_id}/report.pdf")
async def report_pdf(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    return await downloads.report(session, round_id=round_id, file_format="pdf", templates=templates)


@router.get("/{round_id}/report.docx")
async def report_docx(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    return await downloads.report(session, round_id=round_id, file_format="docx", templates=templates)


@router.get("/{round_id}/report.html")
async def report_html(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    return await downloads.report(session, round_id=round_id, file_format="html", templates=templates)

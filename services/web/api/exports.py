"""A round's downloads: the comment matrix (XLSX, DOCX) and the consultation report (PDF, DOCX, HTML)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.web import downloads
from services.web.access import API
from services.web.deps import IdPath, ReadSession, Templates
from services.web.routes import ApiRoute

router = APIRouter(prefix=f"{API}/rounds", tags=["downloads"], route_class=ApiRoute)


@router.get("/{round_id}/comment-matrix.xlsx", response_class=Response)
async def comment_matrix_xlsx(session: ReadSession, round_id: IdPath) -> Response:
    """Every comment with its answer, edited and withdrawn ones marked; formulas neutralised."""
    return await downloads.matrix(session, round_id=round_id, file_format="xlsx")


@router.get("/{round_id}/comment-matrix.docx", response_class=Response)
async def comment_matrix_docx(session: ReadSession, round_id: IdPath) -> Response:
    return await downloads.matrix(session, round_id=round_id, file_format="docx")


@router.get("/{round_id}/report.pdf", response_class=Response)
async def report_pdf(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    """The consultation report: period, who answered, decisions, comments, answers, objections, sign-offs."""
    return await downloads.report(session, round_id=round_id, file_format="pdf", templates=templates)


@router.get("/{round_id}/report.docx", response_class=Response)
async def report_docx(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    return await downloads.report(session, round_id=round_id, file_format="docx", templates=templates)


@router.get("/{round_id}/report.html", response_class=Response)
async def report_html(session: ReadSession, templates: Templates, round_id: IdPath) -> Response:
    return await downloads.report(session, round_id=round_id, file_format="html", templates=templates)

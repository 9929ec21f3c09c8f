from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from models.api import Readiness
from services.errors import ServiceUnavailable
from services.web.deps import DatabaseDep, SchedulerDep
from services.web.routes import PublicRoute

router = APIRouter(tags=["health"], route_class=PublicRoute)
CHECK_TIMEOUT_SECONDS = 5.0
"""A part that does not answer within this is reported unreachable (a silent network must not hang us)."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A part is unreachable; `checks` says which."}},
)
async def readyz(db: DatabaseDep, scheduler: SchedulerDep) -> JSONResponse:
    """The database and the scheduler (Temporal) are reachable: 200, or 503 with the reason of each."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(db.ping(), CHECK_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = f"unreachable: no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # any failure means not ready; the reason is reported, not raised
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(scheduler.ping(), CHECK_TIMEOUT_SECONDS)
        checks["temporal"] = "ok"
    except TimeoutError:
        checks["temporal"] = f"unreachable: no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except ServiceUnavailable as exc:
        checks["temporal"] = f"unreachable: {exc.detail}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.errors import ServiceUnavailable
from services.web.deps import DatabaseDep, SchedulerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DatabaseDep, scheduler: SchedulerDep) -> JSONResponse:
    """The database and the scheduler (Temporal) are reachable."""
    checks: dict[str, str] = {}
    try:
        await db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported, not raised
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await scheduler.ping()
        checks["temporal"] = "ok"
    except ServiceUnavailable as exc:
        checks["temporal"] = f"unreachable: {exc.detail}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)

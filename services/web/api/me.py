from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.web.deps import ApiPrincipal, ApiRoute

router = APIRouter(tags=["accounts"], route_class=ApiRoute)


class Me(BaseModel):
    user_id: int
    email: str
    role: str


@router.get("/me", response_model=Me)
async def me(principal: ApiPrincipal) -> Me:
    """Whose token this is."""
    return Me(user_id=principal.user_id, email=principal.email, role=principal.role)

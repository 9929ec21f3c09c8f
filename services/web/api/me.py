from __future__ import annotations

from fastapi import APIRouter

from models.enums import Role
from models.users import MeRead
from services.web.access import API
from services.web.deps import ApiPrincipal
from services.web.routes import ApiRoute

router = APIRouter(prefix=API, tags=["accounts"], route_class=ApiRoute)


@router.get("/me", response_model=MeRead)
async def me(principal: ApiPrincipal) -> MeRead:
    """Whose token this is."""
    return MeRead(user_id=principal.user_id, email=principal.email, role=Role(principal.role))

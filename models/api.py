"""What the API answers besides its resources: its one error body, and the readiness check's."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """What every error of the API answers."""

    error: str = Field(description="What kind of error, as a code: not_found, conflict, invalid_input…")
    detail: str = Field(description="What went wrong, in words a person can act on.")
    problems: list[str] = Field(
        default_factory=list,
        description="For invalid input: one line per problem, 'field: what is wrong'. Absent otherwise.",
    )


class Readiness(BaseModel):
    """Whether the parts the service needs answer (GET /readyz)."""

    status: str = Field(description="ready, or not ready")
    checks: dict[str, str] = Field(
        description="Each part (database, temporal): ok, or why it is unreachable."
    )

"""Counters of requests per window, for what strangers may ask for a limited number of times."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.types import UTCDateTime


class ThrottleCount(SQLModel, table=True):
    """How many requests one subject (a client address, an email address, kept only as a keyed digest)
    made of one kind in one fixed window. Kept in the database so that every web process counts alike;
    a row whose window has ended is deleted by the next request that counts anything."""

    __tablename__ = "throttle_counts"

    key: str = Field(
        primary_key=True, max_length=120, description="scope:digest of the subject:start of the window."
    )
    count: int = 0
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True, description="When the window ends.")

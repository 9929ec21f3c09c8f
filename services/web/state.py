"""What the app holds for its lifetime, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.templating import Jinja2Templates

from services.db import Database
from services.settings import Settings
from workflows.client import Scheduler


@dataclass
class AppState:
    settings: Settings
    db: Database
    scheduler: Scheduler
    templates: Jinja2Templates

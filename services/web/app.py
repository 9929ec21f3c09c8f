"""The app factory."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import jinja2
from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.db import Database
from services.formatting import when_text
from services.settings import Settings, get_settings
from services.web import access, csrf, errors, i18n, openapi, text_display
from services.web.api import (
    audit,
    comments,
    documents,
    exports,
    extension_requests,
    health,
    me,
    organisations,
    rounds,
    tasks,
)
from services.web.body_limits import BodyLimits
from services.web.head_requests import HeadAsGet
from services.web.pages import (
    console,
    console_account,
    console_answers,
    console_registry,
    console_report,
    console_wizard,
    devmail,
    lost_link,
    review,
)
from services.web.routes import PublicRoute
from services.web.security_headers import SecurityHeaders
from services.web.state import AppState
from workflows.client import Scheduler

WEB_DIR = Path(__file__).parent


def build_templates(settings: Settings) -> Jinja2Templates:
    """The pages' templates: an environment per language (i18n.Translated compiles each language's words
    into its templates), the same filters in each."""

    # Babel takes tens of microseconds a date, and the same few dates (a round's deadline, a task's
    # comments) come back on every rendering of a page.
    @functools.lru_cache(maxsize=4096)
    def localised(moment: datetime, timezone: str, language: str) -> str:
        return when_text(moment, timezone=timezone, language=language)

    environments = {}
    for language in i18n.LANGUAGES:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # In production the templates never change under a running process: checking every template's
            # file on disk for every page rendered is wasted work there.
            auto_reload=not settings.is_production,
            extensions=[i18n.Translated],
        )
        i18n.install(environment, language)  # its words, and the filters `tr` and `number`
        text_display.install(environment, language)  # the filter `isolated`

        def when(moment: datetime | None, timezone: str | None = None, *, language: str = language) -> str:
            """In `timezone` (a person's), else the deployment's; in the page's language."""
            return localised(moment, timezone or settings.timezone, language) if moment else ""

        def label(value: object, *, language: str = language) -> str:
            """An enum's value as words (deadline_passed: "deadline passed"), in the page's language."""
            return i18n.translated(language, str(value).replace("_", " "))

        environment.filters["when"] = when
        environment.filters["label"] = label
        environment.filters["short_hash"] = lambda digest: f"{digest[:12]}…" if digest else ""
        environments[language] = environment
    return i18n.Templates(environments=environments, secure_cookies=csrf.secure_cookies(settings))


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, scheduler: Scheduler | None = None
) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production_ready()
    state = AppState(
        settings=settings,
        db=db or Database.from_settings(settings),
        scheduler=scheduler or Scheduler(settings),
        templates=build_templates(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.db.dispose()

    app = FastAPI(
        title="Roundtable",
        version="0.1.0",
        description="Consultation rounds on draft strategies: registry, drafts, rounds, sign-offs, audit.",
        lifespan=lifespan,
    )
    app.state.roundtable = state
    errors.install(app)
    openapi.install(app)
    # The last added runs first: every answer gets the security headers, a HEAD's included, and a body
    # is bounded before any route reads it.
    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders, settings=settings)

    # Each router carries its whole prefix: its routes look up their lines in the access table by the
    # paths they are served at.
    for module in (
        organisations,
        comments,
        exports,
        documents,
        rounds,
        tasks,
        extension_requests,
        audit,
        me,
        health,
        review,
        lost_link,
        console_wizard,  # before console: /rounds/new is no {round_id}
        console,
        console_account,
        console_registry,
        console_report,
        console_answers,
    ):
        app.include_router(module.router)
    if settings.environment != "production":
        app.include_router(devmail.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.include_router(front)
    access.check(app, production=settings.is_production)
    return app


front = APIRouter(include_in_schema=False, route_class=PublicRoute)


@front.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)

"""The bare FastAPI app the review-page benchmark compares with: what the same stack does with no
application around it.

- GET /page renders a Jinja2 page (autoescaped, a loop over paragraphs) of exactly the size of the
  review page: BASELINE_PAGE_BYTES, or the number in the file BASELINE_PAGE_BYTES_FILE, read on the
  first request (so that this app can start alongside ours, before our page is measured).
- POST /insert reads the body and inserts one row in one transaction: with aiosqlite on one connection
  per process (WAL, synchronous=FULL, as the app's engine sets them) when BASELINE_DATABASE is a file
  path, or with an asyncpg pool when it is a postgresql:// DSN.

Served by uvicorn with the options the app gets: `uvicorn bench.baseline_web:create_app --factory`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

PAGE_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><main><h1>{{ title }}</h1>
{% for paragraph in paragraphs %}<div class="para" id="p-{{ loop.index }}"><p>{{ paragraph }}</p></div>
{% endfor %}<p>{{ padding }}</p></main></body></html>
"""
TABLE = "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at REAL)"
PG_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_rows "
    "(id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, at DOUBLE PRECISION)"
)


def _page_context(template: jinja2.Template, size: int) -> dict[str, Any]:
    """Paragraphs and padding that make the rendered page exactly `size` bytes."""
    sentence = "The ministry shall publish the annual migration report & its annexes <on time>. "
    context: dict[str, Any] = {"title": "Migration strategy", "paragraphs": [], "padding": ""}
    while len(template.render(context).encode()) + 400 < size:
        context["paragraphs"].append(sentence * 3)
    context["padding"] = "x" * max(0, size - len(template.render(context).encode()))
    return context


def create_app() -> FastAPI:
    database = os.environ.get("BASELINE_DATABASE", "")
    environment = jinja2.Environment(autoescape=True)
    template = environment.from_string(PAGE_TEMPLATE)
    resources: dict[str, Any] = {}

    def page_context() -> dict[str, Any]:
        if "page" not in resources:
            size_file = os.environ.get("BASELINE_PAGE_BYTES_FILE")
            size = Path(size_file).read_text() if size_file else os.environ.get("BASELINE_PAGE_BYTES", "6000")
            resources["page"] = _page_context(template, int(size))
        context: dict[str, Any] = resources["page"]
        return context

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if database.startswith("postgresql"):
            import asyncpg

            pool = await asyncpg.create_pool(database, min_size=10, max_size=20)
            resources["pg"] = pool
            yield
            await pool.close()
        elif database:
            import aiosqlite

            connection = await aiosqlite.connect(database, isolation_level=None)
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=FULL")
            await connection.execute("PRAGMA busy_timeout=30000")
            resources["sqlite"] = connection
            # One connection per process, as the app's write pool: its transactions must not interleave.
            resources["lock"] = asyncio.Lock()
            yield
            await connection.close()
        else:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse(template.render(page_context()))

    @app.post("/insert")
    async def insert(request: Request) -> Response:
        body = (await request.body()).decode()
        if "pg" in resources:
            await resources["pg"].execute(
                "INSERT INTO bench_rows (body, at) VALUES ($1, extract(epoch from now()))", body
            )
        else:
            connection = resources["sqlite"]
            async with resources["lock"]:
                await connection.execute("BEGIN IMMEDIATE")
                await connection.execute(
                    "INSERT INTO bench_rows (body, at) VALUES (?, unixepoch('subsec'))", (body,)
                )
                await connection.execute("COMMIT")
        return Response(status_code=303, headers={"Location": "/page"})

    return app


async def prepare(database: str) -> None:
    """Create the table once, before the workers start."""
    if database.startswith("postgresql"):
        import asyncpg

        connection = await asyncpg.connect(database)
        try:
            await connection.execute(PG_TABLE)
        finally:
            await connection.close()
    else:
        import aiosqlite

        async with aiosqlite.connect(database) as connection:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute(TABLE)
            await connection.commit()

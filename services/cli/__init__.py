"""The `roundtable` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from models.audit import Actor
from models.enums import ActorKind, Role
from models.users import UserCreate
from services.settings import NotProductionReady, Settings, get_settings

app = typer.Typer(help="Roundtable: consultation rounds with a verifiable record.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts of coordinators, auditors and admins.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

CLI_ACTOR = Actor(kind=ActorKind.system, id="cli")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option(help="Load the demo registry, draft and round into an empty database.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Port of the Temporal dev server.")] = 7233,
    temporal_ui_port: Annotated[int, typer.Option(help="Port of the Temporal web UI.")] = 8233,
    mail_port: Annotated[int, typer.Option(help="Port of the dev mailbox's SMTP sink.")] = 1025,
) -> None:
    """Run the whole embedded stack under ./.roundtable/: Temporal, worker, web app, dev mailbox."""
    from services.cli.devstack import DevPorts, run_dev_stack

    ports = DevPorts(web=port, temporal=temporal_port, temporal_ui=temporal_ui_port, mail=mail_port)
    sys.exit(run_dev_stack(demo=demo, ports=ports))


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the web app and the JSON API."""
    import uvicorn

    _ready()
    uvicorn.run(
        "services.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(),
    )


def uvicorn_options() -> dict[str, Any]:
    """How the web app is served, besides where. uvicorn's own reading of X-Forwarded-For trusts any
    loopback peer: off, the app reads it from the proxies ROUNDTABLE_TRUSTED_PROXIES lists
    (services.web.proxies). The access log writes every request's path: review tokens are taken out of it
    (services.web.errors.RedactReviewTokens) before any handler sees the line."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config.setdefault("filters", {})["redact_review_tokens"] = {
        "()": "services.web.errors.RedactReviewTokens"
    }
    for handler in log_config["handlers"].values():
        handler.setdefault("filters", []).append("redact_review_tokens")
    return {"proxy_headers": False, "log_config": log_config, "log_level": "info"}


def _ready() -> Settings:
    """The settings, fit to serve; else one line saying what to set, and exit status 2 (no traceback)."""
    try:
        settings = get_settings()
        settings.check_production_ready()
    except NotProductionReady as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        wrong = "; ".join(
            f"ROUNDTABLE_{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()
        )
        typer.echo(f"error: {wrong}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def worker() -> None:
    """Run the round schedulers and their activities (Temporal worker)."""
    from workflows.worker import run_worker

    settings = _ready()
    _logging()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(settings))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the schema migrations to ROUNDTABLE_DATABASE_URL."""
    from services.migrate import upgrade

    settings = get_settings()
    asyncio.run(upgrade(settings.database_url, revision))
    typer.echo(f"database at {_safe_url(settings)} is at revision {revision}")


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The person's email; also the sign-in name.")],
    role: Annotated[Role, typer.Option(help="coordinator, auditor or admin.")],
    name: Annotated[str, typer.Option(help="Full name.")] = "",
    password: Annotated[
        bool, typer.Option("--password/--no-password", help="Ask for a console password.")
    ] = False,
) -> None:
    """Create an account; its API token is printed as the last line (and never shown again)."""
    from services import users
    from services.db import Database

    secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    try:
        data = UserCreate(email=email, role=role, full_name=name, password=secret)
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(2) from None

    async def create() -> str:
        settings = get_settings()
        database = Database.from_settings(settings)
        try:
            async with database.write_session() as session:
                user, token = await users.create_user(
                    session, data=data, actor=CLI_ACTOR, token_lifetime_days=settings.api_token_lifetime_days
                )
        finally:
            await database.dispose()
        typer.echo(f"created {user.role} {user.email} (id {user.id}); API token:", err=True)
        return token

    typer.echo(_run_domain(create()))


@users_app.command("token")
def users_token(email: Annotated[str, typer.Option(help="Whose token.")]) -> None:
    """Issue another API token for an account; printed as the last line."""
    from services import users
    from services.db import Database

    async def issue() -> str:
        settings = get_settings()
        database = Database.from_settings(settings)
        try:
            async with database.write_session() as session:
                return await users.issue_api_token(
                    session,
                    email=email,
                    label="cli",
                    actor=CLI_ACTOR,
                    lifetime_days=settings.api_token_lifetime_days,
                )
        finally:
            await database.dispose()

    typer.echo(_run_domain(issue()))


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Option(help="Whose account.")]) -> None:
    """Disable an account: its API tokens and console sessions stop working at once."""
    from services import accounts
    from services.db import Database

    async def disable() -> str:
        database = Database.from_settings(get_settings())
        try:
            async with database.write_session() as session:
                await accounts.disable_user(session, email=email, actor=CLI_ACTOR)
        finally:
            await database.dispose()
        return f"disabled {email}"

    typer.echo(_run_domain(disable()))


@audit_app.command("verify")
def audit_verify(
    file: Annotated[Path, typer.Argument(help="A JSON Lines export of the audit trail.")],
    head: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH the chain must end at (noted earlier from GET /api/v1/audit/head)."),
    ] = None,
) -> None:
    """Check the hash chain of an export; exit status 0 only if it is intact."""
    from services.audit.verify import verify_lines

    expected = _parse_head(head) if head else None
    if not file.is_file():
        typer.echo(f"no such file: {file}", err=True)
        raise typer.Exit(2)
    with file.open("rb") as lines:
        result = verify_lines(lines, expected_head=expected)
    typer.echo(result.describe())
    raise typer.Exit(0 if result.ok else 1)


def _parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isascii() or not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter(
            "expected SEQ:HASH, e.g. 1234:9f86d081884c7d65…(64 hex digits)", param_hint="--head"
        )
    return int(seq), digest.lower()


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write; default stdout.")
    ] = None,
) -> None:
    """Write the whole audit trail from the database as JSON Lines."""
    from services import exports
    from services.db import Database

    async def export() -> None:
        database = Database.from_settings(get_settings())
        target = output.open("wb") if output else sys.stdout.buffer
        try:
            async for chunk in exports.audit_trail(database).chunks:
                target.write(chunk)
        finally:
            if output:
                target.close()
            await database.dispose()

    asyncio.run(export())


def _run_domain(coroutine):  # type: ignore[no-untyped-def]
    """Run a use case; a domain error is a message and exit status 1, not a traceback."""
    from services.errors import DomainError

    try:
        return asyncio.run(coroutine)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()

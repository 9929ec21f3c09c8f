"""Schema migrations (Alembic), callable from the CLI, the dev stack and the tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from services.db import Database, Limits
from services.settings import get_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, in one transaction where the database allows it."""
    await _migrate(url, command.upgrade, revision)


async def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` back to `revision` (every connection to it should be closed)."""
    await _migrate(url, command.downgrade, revision)


async def _migrate(url: str, step: Callable[[Config, str], None], revision: str) -> None:
    # A migration may rewrite a large table: no statement timeout. The lock timeout stays, so that a
    # migration waiting for a table that running processes use fails instead of queueing them all.
    # On SQLite, a migration that must rebuild a table (to drop a constraint) cannot with foreign keys
    # enforced, since rows elsewhere point at it; they are checked, all of them, before the commit.
    database = Database(
        url,
        limits=dataclasses.replace(
            Limits.from_settings(get_settings()), statement_timeout=None, sqlite_foreign_keys=False
        ),
    )

    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        step(config, revision)
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"the migration would leave rows pointing at nothing: {broken[:10]}")

    try:
        async with database.write_engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await database.dispose()

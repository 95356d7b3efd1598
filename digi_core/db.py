"""The database: Tortoise ORM's config for Digi, start-up and shutdown, and migrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate
from tortoise.migrations.executor import MigrationExecutor

from digi_core.config import Settings

APP_LABEL = "digi"
MODELS_MODULE = "digi_core.models"
MIGRATIONS_MODULE = "digi_core.migrations"


def tortoise_url(database_url: str) -> str:
    """Tortoise's spelling of a database URL (``postgresql://`` becomes ``postgres://``)."""
    if database_url.startswith("postgresql://"):
        return "postgres://" + database_url.removeprefix("postgresql://")
    return database_url


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": tortoise_url(database_url)},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "migrations": MIGRATIONS_MODULE,
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(settings: Settings) -> None:
    """Connect Tortoise to the configured database (the schema comes from migrations)."""
    await Tortoise.init(config=tortoise_config(settings.database_url))


async def close_database() -> None:
    await Tortoise.close_connections()
    # Tortoise caches each model's INSERT SQL per connection name, whatever the backend: a
    # process that reopens "default" on another database (tests do) must not reuse it.
    EXECUTOR_CACHE.clear()


async def upgrade(
    settings: Settings, progress: Callable[[str, str, str], object] | None = None
) -> None:
    """Apply every migration not yet applied (``digi db upgrade``)."""
    try:
        await migrate(config=tortoise_config(settings.database_url), progress=progress)
    finally:
        await close_database()


async def ping() -> None:
    """Raise when the database does not answer a trivial query."""
    connection = Tortoise.get_connection("default")
    await connection.execute_query("SELECT 1")


# For Tortoise's own CLI, which makes migrations from the models:
#   tortoise -c digi_core.db.TORTOISE_ORM makemigrations
TORTOISE_ORM = tortoise_config("sqlite://:memory:")


async def pending_migrations(settings: Settings) -> list[str]:
    """Names of the migrations the database has not applied yet."""
    config = tortoise_config(settings.database_url)
    await Tortoise.init(config=config, init_connections=False)
    try:
        executor = MigrationExecutor(get_connection("default"), config["apps"])
        steps = await executor.plan(None)
        return [step.migration.name for step in steps if not step.backward]
    finally:
        await close_database()

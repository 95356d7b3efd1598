"""Migrations bring an empty SQLite and an empty PostgreSQL database to exactly the models."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from tortoise import Tortoise
from tortoise.migrations.autodetector import MigrationAutodetector

from digi_core import db
from digi_core.config import Settings
from digi_core.models import Domain, DomainKind, User
from tests.conftest import throwaway_postgres


async def test_migration_files_match_the_models(migrated: Settings) -> None:
    config = db.tortoise_config(migrated.database_url)
    autodetector = MigrationAutodetector(Tortoise.apps, config["apps"])
    writers = await autodetector.changes()
    assert [writer.name for writer in writers] == [], (
        "run: tortoise -c digi_core.db.TORTOISE_ORM makemigrations"
    )


async def test_upgrade_leaves_nothing_pending_and_is_repeatable(settings: Settings) -> None:
    assert await db.pending_migrations(settings) == [
        "0001_initial",
        "0002_domains_one_default",
        "0003_deployment_stopped",
        "0004_internal_records",
        "0005_deployment_log_lines",
    ]
    await db.upgrade(settings)
    assert await db.pending_migrations(settings) == []
    await db.upgrade(settings)  # a second run applies nothing and fails on nothing
    assert await db.pending_migrations(settings) == []


async def test_migrated_schema_equals_the_models_schema(settings: Settings, tmp_path: Any) -> None:
    """Tables, columns, types, nullability and indexes from migrations = generate_schemas."""
    await db.upgrade(settings)
    await db.open_database(settings)
    migrated = await _schema(settings.database_url)
    await db.close_database()

    async with contextlib.AsyncExitStack() as stack:
        if settings.embedded:
            reference_url = f"sqlite://{tmp_path / 'reference.sqlite3'}"
        else:
            reference_url = await stack.enter_async_context(throwaway_postgres())
        await Tortoise.init(config=db.tortoise_config(reference_url))
        await Tortoise.generate_schemas()
        reference = await _schema(reference_url)
        await db.close_database()

    # The one index the models cannot express (Tortoise 1.1) comes from migration 0002.
    assert migrated["indexes"] - reference["indexes"] == {("domains", "domains_one_default_uq")}
    assert reference["indexes"] <= migrated["indexes"]
    assert migrated["columns"] == reference["columns"]
    assert migrated["tables"] == reference["tables"]


async def test_constraints_live_in_the_database(migrated: Settings) -> None:
    from tortoise.exceptions import IntegrityError

    await User.create(email="a@example.com")
    with pytest.raises(IntegrityError):
        await User.create(email="a@example.com")
    await Domain.create(name="apps.example.com", kind=DomainKind.PLATFORM, is_default=True)
    await Domain.create(name="other.example.com", kind=DomainKind.PLATFORM)
    await Domain.create(name="third.example.com", kind=DomainKind.PLATFORM)
    with pytest.raises(IntegrityError):
        await Domain.create(name="second.example.com", kind=DomainKind.PLATFORM, is_default=True)


async def _schema(database_url: str) -> dict[str, set[Any]]:
    connection = Tortoise.get_connection("default")
    if database_url.startswith("sqlite"):
        _, tables = await connection.execute_query(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
        names = {row["name"] for row in tables} - {"tortoise_migrations"}
        columns: set[Any] = set()
        indexes: set[Any] = set()
        for name in names:
            _, info = await connection.execute_query(f'PRAGMA table_info("{name}")')
            columns |= {
                (name, c["name"], c["type"], bool(c["notnull"]), bool(c["pk"])) for c in info
            }
            _, index_list = await connection.execute_query(f'PRAGMA index_list("{name}")')
            for index in index_list:
                _, index_columns = await connection.execute_query(
                    f'PRAGMA index_info("{index["name"]}")'
                )
                key = tuple(column["name"] for column in index_columns)
                # Auto-made indexes of UNIQUE columns have generated names: compare by columns.
                label = key if index["name"].startswith("sqlite_autoindex") else index["name"]
                indexes.add((name, label))
        return {"tables": names, "columns": columns, "indexes": indexes}
    _, tables = await connection.execute_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    names = {row["table_name"] for row in tables} - {"tortoise_migrations"}
    _, column_rows = await connection.execute_query(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public'"
    )
    columns = {
        (r["table_name"], r["column_name"], r["data_type"], r["is_nullable"], r["column_default"])
        for r in column_rows
        if r["table_name"] in names
    }
    _, index_rows = await connection.execute_query(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    )
    indexes = {(r["tablename"], r["indexname"]) for r in index_rows if r["tablename"] in names}
    return {"tables": names, "columns": columns, "indexes": indexes}

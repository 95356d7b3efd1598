"""Operator commands: run the server, manage the database, inspect plugins and hosts."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import asdict
from typing import Any

import click
import pluggy
from aiohttp import web
from rich.console import Console
from rich.table import Table

from digi_core import __version__, accounts, db
from digi_core.cli import cli
from digi_core.config import Settings, load_settings
from digi_core.errors import ConfigError, NotConfigured
from digi_core.logs import setup_logging
from digi_core.plugins import Registry
from digi_core.providers import ComputeProvider

console = Console(highlight=False)
log = logging.getLogger("digi")

SHUTDOWN_TIMEOUT_SECONDS = 10.0


@cli.command()
@click.option("--host", help="Address to listen on (default DIGI_HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default DIGI_PORT or 4000).")
@click.pass_obj
def server(manager: pluggy.PluginManager, host: str | None, port: int | None) -> None:
    """Run the API server (GraphQL at /graphql, health at /healthz).

    On the embedded default (SQLite) it applies pending migrations first; with PostgreSQL run
    `digi db upgrade` before starting it. Stops gracefully on SIGTERM or Ctrl-C.

    \b
    Example:
      digi server --host 0.0.0.0 --port 4000
    """
    from digi_core.server.app import init_app

    settings = load_settings()
    setup_logging(settings)
    asyncio.run(_prepare_database(settings))
    app = init_app(settings, manager)
    host = host or settings.host
    port = port or settings.port
    log.info("Digi %s listening on http://%s:%s (GraphQL at /graphql)", __version__, host, port)
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        access_log=logging.getLogger("digi.access"),
    )


@cli.command()
@click.pass_obj
def worker(manager: pluggy.PluginManager) -> None:
    """Run an extra deploy worker (and the reconciler beside it) taking jobs from Redis.

    `digi server` runs a worker itself; add workers for more deploys at once. Needs REDIS_URL
    and the same DATABASE_URL and DIGI_SECRET as the server. Stops on SIGTERM or Ctrl-C,
    handing its unfinished deploys back to the queue.

    \b
    Example:
      REDIS_URL=redis://127.0.0.1:6379/0 digi worker
    """
    settings = load_settings(DIGI_RUN_WORKER="true")
    if settings.redis_url is None:
        raise ConfigError(
            ["REDIS_URL: `digi worker` takes jobs from Redis; without it `digi server` runs them"]
        )
    setup_logging(settings)
    asyncio.run(_prepare_database(settings))
    asyncio.run(_run_worker(settings, manager))


async def _run_worker(settings: Settings, manager: pluggy.PluginManager) -> None:
    from digi_core.server.app import init_worker_app

    runner = web.AppRunner(init_worker_app(settings, manager), handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    log.info("Digi %s worker running", __version__)
    try:
        await stop.wait()
    finally:
        log.info("worker stopping")
        await runner.cleanup()


async def _prepare_database(settings: Settings) -> None:
    if settings.embedded:
        await db.upgrade(settings, progress=_report_migration)
        return
    pending = await db.pending_migrations(settings)
    if pending:
        raise NotConfigured(
            f"the database lacks {len(pending)} migration(s) ({', '.join(pending)}); "
            "run `digi db upgrade` first."
        )


def _report_migration(event: str, app_label: str, name: str) -> None:
    if event == "apply_done":
        log.info("applied migration %s.%s", app_label, name)


@cli.command()
def version() -> None:
    """Print Digi's version.

    \b
    Example:
      digi version
    """
    click.echo(f"digi {__version__}")


@cli.group("db")
def database() -> None:
    """Manage Digi's database schema."""


@database.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run again).

    \b
    Example:
      DATABASE_URL=postgres://digi@db/digi digi db upgrade
    """
    settings = load_settings()

    def report(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            console.print(f"applied {app_label}.{name}")

    asyncio.run(db.upgrade(settings, progress=report))
    console.print("database is up to date")


@database.command()
def status() -> None:
    """List the migrations not applied yet; exit 1 when there are some.

    \b
    Example:
      digi db status
    """
    pending = asyncio.run(db.pending_migrations(load_settings()))
    for name in pending:
        console.print(f"pending {name}")
    if pending:
        raise SystemExit(1)
    console.print("database is up to date")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def plugins(manager: pluggy.PluginManager, as_json: bool) -> None:
    """List the loaded plugins, their versions and what they register.

    \b
    Example:
      digi plugins --json
    """
    infos = Registry(manager).plugins()
    if as_json:
        click.echo(json.dumps([asdict(info) for info in infos], indent=2))
        return
    table = Table("plugin", "version", "registers", "hooks")
    for info in infos:
        registers = "; ".join(
            f"{kind}: {', '.join(names)}" for kind, names in info.providers.items()
        )
        table.add_row(info.name, info.version or "-", registers or "-", ", ".join(info.hooks))
    console.print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def hosts(manager: pluggy.PluginManager, as_json: bool) -> None:
    """List the hosts of the compute provider in use (DIGI_COMPUTE).

    \b
    Example:
      DIGI_COMPUTE=local digi hosts
    """
    settings = load_settings()
    provider = Registry(manager).get(ComputeProvider, settings.compute)
    statuses = asyncio.run(_hosts(provider, settings))
    if as_json:
        click.echo(json.dumps([asdict(status) for status in statuses], indent=2))
        return
    table = Table("id", "provider", "name", "status", "cpus", "memory")
    for status in statuses:
        memory = (
            f"{status.memory_total_bytes / 2**30:.1f} GiB" if status.memory_total_bytes else "-"
        )
        table.add_row(
            status.id, status.provider, status.name, status.status, str(status.cpus or "-"), memory
        )
    console.print(table)


async def _hosts(provider: ComputeProvider, settings: Settings) -> list:  # type: ignore[type-arg]
    # Nodes, VMs and pinned host keys are rows.
    await _prepare_database(settings)
    await db.open_database(settings)
    try:
        await provider.start(settings)
        try:
            return await provider.hosts()
        finally:
            await provider.close()
    finally:
        await db.close_database()


@cli.command("seed-admin")
@click.argument("email", required=False)
@click.argument("name", required=False, default="Admin")
def seed_admin(email: str | None, name: str) -> None:
    """Create an admin account and print its initial password, once.

    Admin accounts cannot be created through the API. Admin passwords rotate every 24 hours;
    each new one is written to the server's log at WARNING.

    \b
    Example:
      digi seed-admin ops@example.com "Ops Team"
    """
    settings = load_settings()
    address = email or f"admin@{settings.platform_domain}"
    user, password = asyncio.run(_seed_admin(settings, address, name))
    console.print(f"created admin {user.email}")
    console.print(f"password: {password}", markup=False)
    console.print("It is shown only this once, and rotates every 24 hours (see the server log).")


async def _seed_admin(settings: Settings, email: str, name: str) -> tuple[Any, str]:
    await db.upgrade(settings)
    await db.open_database(settings)
    try:
        return await accounts.seed_admin(email, name)
    finally:
        await db.close_database()


@cli.command("ssh-key")
def ssh_key() -> None:
    """Print the platform's SSH public key (made once when there is none).

    Digi logs in to hosts with it: Proxmox VMs get it through cloud-init; add it to the
    authorized_keys of a bring-your-own server (DIGI_SSH_SERVERS).

    \b
    Example:
      digi ssh-key | ssh root@203.0.113.7 'cat >> ~/.ssh/authorized_keys'
    """
    from digi_core.ssh import KEY_FILE, platform_key, public_key_line

    settings = load_settings()
    click.echo(public_key_line(platform_key(settings.ssh_key_file or settings.data_dir / KEY_FILE)))


@cli.command("create-user")
@click.argument("email")
@click.option("--name", default="", help="The user's display name.")
@click.option("--token-name", default="cli", show_default=True, help="Name of the API token.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the token (for scripts).")
def create_user(email: str, name: str, token_name: str, quiet: bool) -> None:
    """Create a verified user and print their password (once) and an API token.

    For operators and set-up scripts; users sign up through the API themselves.

    \b
    Example:
      digi create-user dev@example.com --name "Dev"
      export DIGI_TOKEN=$(digi create-user ci@example.com --token-name ci -q)
    """
    settings = load_settings()
    password, token = asyncio.run(_create_user(settings, email, name, token_name))
    if quiet:
        click.echo(token)
        return
    console.print(f"created {email}")
    console.print(f"password: {password}", markup=False)
    console.print(f"API token ({token_name}): {token}", markup=False)
    console.print("Both are shown only this once: `digi login --token <token>` saves the token.")


async def _create_user(
    settings: Settings, email: str, name: str, token_name: str
) -> tuple[str, str]:
    await db.upgrade(settings)
    await db.open_database(settings)
    try:
        password = accounts.new_password()
        user = await accounts.create_user(email, password, name)
        user.email_verified_at = accounts.now()
        await user.save(update_fields=["email_verified_at"])
        _, token = await accounts.issue_token(settings.secret_value, user, token_name)
        return password, token
    finally:
        await db.close_database()


@cli.command()
@click.option(
    "--toml", "stack_file", is_flag=True, help="Print the JSON Schema of digi.toml instead."
)
def schema(stack_file: bool) -> None:
    """Print the GraphQL schema (SDL), or with --toml the JSON Schema of digi.toml.

    Editors validate and complete digi.toml with the JSON Schema (taplo, Even Better TOML).

    \b
    Example:
      digi schema > schema.graphql
      digi schema --toml > digi.schema.json
    """
    if stack_file:
        from digi_core.stack import json_schema

        click.echo(json.dumps(json_schema(), indent=2))
        return
    from digi_core.api.schema import make_schema

    click.echo(make_schema().as_str())

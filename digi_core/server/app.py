"""Builds the aiohttp application: state, routes and the resources it opens and closes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pluggy
import redis.asyncio as redis
from aiohttp import web
from aiohttp.typedefs import Handler

from digi_core import db
from digi_core.accounts import rotate_admin_passwords
from digi_core.api.schema import make_schema, make_view
from digi_core.config import Settings
from digi_core.crypto import SecretBox
from digi_core.errors import DigiError
from digi_core.events import make_event_bus
from digi_core.mail import Mailer
from digi_core.plugins import Registry, make_plugin_manager
from digi_core.providers import ComputeProvider
from digi_core.ratelimit import make_rate_limiter
from digi_core.server.auth_routes import setup_auth_routes
from digi_core.server.health import healthz
from digi_core.server.keys import (
    BACKGROUND_TASKS,
    EVENT_BUS,
    MAILER,
    PLUGIN_MANAGER,
    RATE_LIMITER,
    REDIS,
    REGISTRY,
    SECRET_BOX,
    SETTINGS,
)

log = logging.getLogger(__name__)

# Admin passwords live 24 hours; checking hourly rotates each within an hour of expiring.
ADMIN_ROTATION_CHECK_SECONDS = 3600.0


def init_app(
    settings: Settings, plugin_manager: pluggy.PluginManager | None = None
) -> web.Application:
    """The whole app for ``settings``; a fresh plugin manager unless one is given."""
    app = web.Application(middlewares=[digi_errors])
    manager = plugin_manager or make_plugin_manager(settings.plugins_to_load)
    app[SETTINGS] = settings
    app[PLUGIN_MANAGER] = manager
    app[REGISTRY] = Registry(manager)
    app[SECRET_BOX] = SecretBox(settings.secret_value)
    app[MAILER] = Mailer(settings)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(compute_ctx)
    app.cleanup_ctx.append(background_ctx)
    setup_routes(app, settings)
    return app


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", healthz)
    view = make_view(make_schema(), graphiql=not settings.production)
    app.router.add_route("*", "/graphql", view)
    setup_auth_routes(app)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    await db.open_database(app[SETTINGS])
    yield
    await db.close_database()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Redis when configured; the event bus and rate limits use it, or in-process stand-ins."""
    url = app[SETTINGS].redis_url
    client = redis.Redis.from_url(url) if url else None
    if client is not None:
        app[REDIS] = client
    prefix = app[SETTINGS].redis_prefix
    app[EVENT_BUS] = make_event_bus(client, prefix)
    app[RATE_LIMITER] = make_rate_limiter(client, prefix + "ratelimit:")
    yield
    await app[EVENT_BUS].close()
    if client is not None:
        await client.aclose()


async def compute_ctx(app: web.Application) -> AsyncIterator[None]:
    """The compute provider in use is started once before first use and closed at shutdown."""
    settings = app[SETTINGS]
    # Not loaded: the operations that need it answer NOT_CONFIGURED through Registry.get.
    provider = app[REGISTRY].providers(ComputeProvider).get(settings.compute)
    if provider is not None:
        await provider.start(settings)
    yield
    if provider is not None:
        await provider.close()


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    """Scheduled jobs that run inside the server (the worker takes over when it exists)."""
    tasks = [asyncio.create_task(_every(ADMIN_ROTATION_CHECK_SECONDS, rotate_admin_passwords))]
    app[BACKGROUND_TASKS] = tasks
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await job()
        except Exception:  # a failed run is logged; the schedule goes on
            log.exception("scheduled job %s failed", getattr(job, "__name__", job))
        await asyncio.sleep(seconds)


@web.middleware
async def digi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A DigiError raised by a plain HTTP handler becomes its status and a JSON body."""
    try:
        return await handler(request)
    except DigiError as error:
        return web.json_response(
            {"error": {"message": error.message, **error.extensions}}, status=error.http_status
        )

"""Builds the aiohttp application: state, routes and the resources it opens and closes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pluggy
import redis.asyncio as redis
from aiohttp import web
from aiohttp.typedefs import Handler

from digi_core import db
from digi_core.config import Settings
from digi_core.errors import DigiError
from digi_core.plugins import Registry, make_plugin_manager
from digi_core.server.graphql import make_schema, make_view
from digi_core.server.health import healthz
from digi_core.server.keys import PLUGIN_MANAGER, REDIS, REGISTRY, SETTINGS

log = logging.getLogger(__name__)


def init_app(
    settings: Settings, plugin_manager: pluggy.PluginManager | None = None
) -> web.Application:
    """The whole app for ``settings``; a fresh plugin manager unless one is given."""
    app = web.Application(middlewares=[digi_errors])
    manager = plugin_manager or make_plugin_manager(settings.plugins_to_load)
    app[SETTINGS] = settings
    app[PLUGIN_MANAGER] = manager
    app[REGISTRY] = Registry(manager)
    app.cleanup_ctx.append(database_ctx)
    if settings.redis_url:
        app.cleanup_ctx.append(redis_ctx)
    setup_routes(app, settings)
    return app


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", healthz)
    view = make_view(make_schema(), graphiql=not settings.production)
    app.router.add_route("*", "/graphql", view)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    await db.open_database(app[SETTINGS])
    yield
    await db.close_database()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    assert url is not None
    client = redis.Redis.from_url(url)
    app[REDIS] = client
    yield
    await client.aclose()


@web.middleware
async def digi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A DigiError raised by a plain HTTP handler becomes its status and a JSON body."""
    try:
        return await handler(request)
    except DigiError as error:
        return web.json_response(
            {"error": {"message": error.message, **error.extensions}}, status=error.http_status
        )

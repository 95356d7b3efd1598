"""Builds the aiohttp application: state, routes and the resources it opens and closes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pluggy
import redis.asyncio as redis
from aiohttp import web
from aiohttp.typedefs import Handler

from digi_core import db
from digi_core.api.schema import make_schema, make_view
from digi_core.config import Settings
from digi_core.container_logs import LogFollowers
from digi_core.crypto import SecretBox
from digi_core.deploys.queue import make_job_queue, worker_id
from digi_core.deploys.shared import Deps
from digi_core.deploys.worker import Worker
from digi_core.errors import DigiError
from digi_core.events import make_event_bus
from digi_core.internal_dns import ZoneServer
from digi_core.mail import Mailer
from digi_core.plugins import Registry, make_plugin_manager
from digi_core.providers import Builder, ComputeProvider, Provider, Router
from digi_core.ratelimit import make_rate_limiter
from digi_core.server.auth_routes import setup_auth_routes
from digi_core.server.health import healthz
from digi_core.server.keys import (
    DEPS,
    EVENT_BUS,
    JOB_QUEUE,
    LOG_FOLLOWERS,
    MAILER,
    PLUGIN_MANAGER,
    RATE_LIMITER,
    REDIS,
    REGISTRY,
    SECRET_BOX,
    SETTINGS,
    WORKER,
)
from digi_core.server.metrics import metrics
from digi_core.server.tls_ask import setup_tls_ask
from digi_core.server.upload_routes import setup_upload_routes

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
    app[SECRET_BOX] = SecretBox(settings.secret_value)
    app[MAILER] = Mailer(settings)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(internal_dns_ctx)
    app.cleanup_ctx.append(providers_ctx)
    app.cleanup_ctx.append(deploys_ctx)
    setup_routes(app, settings)
    return app


def init_worker_app(
    settings: Settings, plugin_manager: pluggy.PluginManager | None = None
) -> web.Application:
    """What `digi worker` runs: the server's resources and its deploy worker, no HTTP."""
    app = web.Application()
    manager = plugin_manager or make_plugin_manager(settings.plugins_to_load)
    app[SETTINGS] = settings
    app[PLUGIN_MANAGER] = manager
    app[REGISTRY] = Registry(manager)
    app[SECRET_BOX] = SecretBox(settings.secret_value)
    for context in (database_ctx, redis_ctx, providers_ctx, deploys_ctx):
        app.cleanup_ctx.append(context)
    return app


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    view = make_view(make_schema(), graphiql=not settings.production)
    app.router.add_route("*", "/graphql", view)
    setup_auth_routes(app)
    setup_upload_routes(app)
    setup_tls_ask(app)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    await db.open_database(app[SETTINGS])
    yield
    await db.close_database()


async def internal_dns_ctx(app: web.Application) -> AsyncIterator[None]:
    """The server answers Digi's internal DNS zone (`digi worker` processes only write it)."""
    server = ZoneServer()
    await server.start(app[SETTINGS].internal_dns)
    yield
    await server.close()


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


async def providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The compute provider and router in use start once before first use and close at
    shutdown (on the embedded default the router starts Caddy)."""
    settings = app[SETTINGS]
    registry = app[REGISTRY]
    # One not loaded is fine here: what needs it answers NOT_CONFIGURED through Registry.get.
    started: list[Provider] = []
    chosen: list[Provider | None] = [
        registry.providers(ComputeProvider).get(settings.compute),
        registry.providers(Router).get(settings.router),
        *registry.providers(Builder).values(),
    ]
    for provider in chosen:
        if provider is not None:
            await provider.start(settings)
            started.append(provider)
    yield
    for provider in reversed(started):
        await provider.close()


async def deploys_ctx(app: web.Application) -> AsyncIterator[None]:
    """The job queue the API enqueues into and, unless DIGI_RUN_WORKER is false, a worker
    with the reconciler beside it; live log streams are shared here too."""
    settings = app[SETTINGS]
    queue = await make_job_queue(settings.redis_url, settings.redis_prefix)
    deps = Deps(settings, app[REGISTRY], app[EVENT_BUS], app[SECRET_BOX], worker_id())
    app[JOB_QUEUE] = queue
    app[DEPS] = deps
    app[LOG_FOLLOWERS] = followers = LogFollowers()
    worker = Worker(deps, queue, app.get(REDIS)) if settings.run_worker else None
    if worker is not None:
        app[WORKER] = worker
        await worker.start()
    yield
    if worker is not None:
        await worker.close()
    else:
        await queue.close()
    await followers.close()


@web.middleware
async def digi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A DigiError raised by a plain HTTP handler becomes its status and a JSON body."""
    try:
        return await handler(request)
    except DigiError as error:
        return web.json_response(
            {"error": {"message": error.message, **error.extensions}}, status=error.http_status
        )

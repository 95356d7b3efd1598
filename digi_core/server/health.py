"""``/healthz``: the database and, when configured, Redis, each checked for real."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from digi_core import __version__, db
from digi_core.server.keys import REDIS

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0


async def healthz(request: web.Request) -> web.Response:
    """200 when every part answers; 503 naming the part that does not."""
    checks: dict[str, str] = {"database": await _check(db.ping())}
    redis_client = request.app.get(REDIS)
    if redis_client is not None:
        checks["redis"] = await _check(redis_client.ping())
    healthy = all(result == "ok" for result in checks.values())
    body = {"status": "ok" if healthy else "fail", "version": __version__, "checks": checks}
    return web.json_response(body, status=200 if healthy else 503)


async def _check(probe: object) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await probe  # type: ignore[misc]
    except Exception as error:  # any failure of the part makes it unhealthy, named
        log.warning("health check failed: %s", error)
        return f"error: {type(error).__name__}: {error}".strip()
    return "ok"

"""``GET /internal/tls/ask?domain=…``: whether Caddy's on-demand TLS may get a certificate."""

from __future__ import annotations

from aiohttp import web

from digi_core.domains import may_issue_certificate
from digi_core.errors import BadUserInput
from digi_core.server.keys import SETTINGS


def setup_tls_ask(app: web.Application) -> None:
    app.router.add_get("/internal/tls/ask", tls_ask)


async def tls_ask(request: web.Request) -> web.Response:
    """200 for a name Digi serves (Caddy then gets its certificate), 404 for any other."""
    name = request.query.get("domain")
    if not name:
        raise BadUserInput("give the hostname as ?domain=<name>", field="domain")
    if await may_issue_certificate(name, request.app[SETTINGS]):
        return web.Response(text="ok")
    return web.Response(status=404, text="not a domain served here")

"""The Caddy router: each host's routes live as ``@id``-tagged routes on that host's Caddy.

Layout on every host's Caddy (JSON admin API): one server ``apps.http.servers.digi`` listening
on ``:<DIGI_HTTP_PORT>``, one route per hostname (``@id`` derived from the hostname) and, always
last, a catch-all ``digi-fallback`` that answers 404 with a short text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from digi_core.errors import BadUserInput, DigiError
from digi_core.names import LABEL, MAX_DOMAIN_LENGTH
from digi_core.providers import Host, Route, Router

if TYPE_CHECKING:
    from digi_caddy.process import ManagedCaddy
    from digi_core.config import Settings

log = logging.getLogger(__name__)

SERVER_NAME = "digi"
SERVER_PATH = f"/config/apps/http/servers/{SERVER_NAME}"
ROUTES_PATH = f"{SERVER_PATH}/routes"
ROUTE_ID_PREFIX = "digi-route-"
FALLBACK_ID = "digi-fallback"
FALLBACK_BODY = "No app is deployed at this address.\n"
ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
ADMIN_ATTEMPTS = 3

CaddyJson = Any
"""A fragment of Caddy's JSON config, as the admin API sends and takes it."""


class CaddyAdminError(DigiError):
    """Caddy's admin API did not answer, or refused a change (``status`` is its HTTP answer)."""

    code = "ROUTER_UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def validate_hostname(hostname: str) -> str:
    """A hostname Digi may route: lowercase RFC 1123 labels joined by dots, nothing else.

    Checked before anything reaches Caddy: the hostname becomes part of an ``@id`` and of
    an admin API path.
    """
    if (
        isinstance(hostname, str)
        and 0 < len(hostname) <= MAX_DOMAIN_LENGTH
        and all(LABEL.fullmatch(label) for label in hostname.split("."))
    ):
        return hostname
    shown = repr(hostname)[:80]
    raise BadUserInput(
        f"hostname {shown} cannot be routed: use dot-separated labels of 1-63 lowercase "
        "letters, digits and inner hyphens (at most 253 characters, no wildcard, no "
        "trailing dot); lowercase it first if it has capitals.",
        field="hostname",
    )


def validate_upstream(upstream: str) -> str:
    """``ip:port`` or ``name:port`` of a container; never a Unix socket or a placeholder."""
    host, _, port = upstream.rpartition(":") if isinstance(upstream, str) else ("", "", "")
    if host.startswith("[") and host.endswith("]"):
        host_ok = _is_ip(host[1:-1], version=6)
    else:
        host_ok = _is_ip(host, version=4) or _is_dns_name(host)
    if host_ok and port.isascii() and port.isdigit() and 0 < int(port) < 65536:
        return upstream
    raise BadUserInput(
        f"upstream {repr(upstream)[:80]} is not an address Caddy may proxy to: use ip:port "
        "(or [ipv6]:port, or name:port) with a port from 1 to 65535.",
        field="upstream",
    )


def _is_ip(value: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False


def _is_dns_name(value: str) -> bool:
    return 0 < len(value) <= MAX_DOMAIN_LENGTH and all(
        LABEL.fullmatch(label) for label in value.split(".")
    )


def route_id(hostname: str) -> str:
    """The ``@id`` of a hostname's route; dots become ``_`` (never in a hostname), so two
    hostnames never share an id."""
    return ROUTE_ID_PREFIX + validate_hostname(hostname).replace(".", "_")


def caddy_route(route: Route) -> CaddyJson:
    """One hostname's route as Caddy holds it."""
    return {
        "@id": route_id(route.hostname),
        "match": [{"host": [route.hostname]}],
        "handle": [
            {"handler": "reverse_proxy", "upstreams": [{"dial": validate_upstream(route.upstream)}]}
        ],
        "terminal": True,
    }


def fallback_route() -> CaddyJson:
    """The last route: without it Caddy answers an unknown hostname with an empty 200."""
    return {
        "@id": FALLBACK_ID,
        "handle": [{"handler": "static_response", "status_code": 404, "body": FALLBACK_BODY}],
    }


def digi_server(http_port: int, routes: Sequence[CaddyJson] = ()) -> CaddyJson:
    """Digi's server: plain HTTP on ``http_port`` (TLS comes later), fallback last."""
    return {
        "listen": [f":{http_port}"],
        # Caddy would otherwise try to get certificates for every routed hostname.
        "automatic_https": {"disable": True},
        "routes": [*routes, fallback_route()],
    }


def _checked(routes: Sequence[Route]) -> dict[str, Route]:
    """The routes by ``@id``, all validated first so that a bad one changes nothing."""
    checked: dict[str, Route] = {}
    for route in routes:
        validate_upstream(route.upstream)
        checked[route_id(route.hostname)] = route
    return checked


def _merged(current: list[CaddyJson], wanted: dict[str, Route]) -> list[CaddyJson]:
    """``current`` with ``wanted`` replaced in place or added, duplicates dropped, fallback last."""
    merged: list[CaddyJson] = []
    seen: set[str] = set()
    for item in current:
        item_id = item.get("@id") if isinstance(item, dict) else None
        if item_id == FALLBACK_ID or (item_id is not None and item_id in seen):
            continue
        if item_id is not None:
            seen.add(item_id)
        merged.append(caddy_route(wanted[item_id]) if item_id in wanted else item)
    merged.extend(caddy_route(route) for key, route in wanted.items() if key not in seen)
    return [*merged, fallback_route()]


def _repaired_server(server: CaddyJson, http_port: int) -> CaddyJson:
    """Digi's server as it must be: its listen, no automatic HTTPS, one fallback, last."""
    routes = server.get("routes") if isinstance(server.get("routes"), list) else []
    return {
        **server,
        "listen": [f":{http_port}"],
        "automatic_https": {**(server.get("automatic_https") or {}), "disable": True},
        "routes": _merged(routes, {}),
    }


def _as_route(item: CaddyJson) -> Route | None:
    """The Route a Digi route carries, or ``None`` when it was edited out of shape by hand."""
    try:
        route = Route(item["match"][0]["host"][0], item["handle"][0]["upstreams"][0]["dial"])
        if route_id(route.hostname) == item["@id"]:
            return route
    except (KeyError, IndexError, TypeError, DigiError):
        pass
    log.warning("ignoring the malformed Digi route %r on Caddy", item.get("@id"))
    return None


class CaddyRouter(Router):
    """Drives each host's Caddy through its admin API; on the embedded default (with
    ``DIGI_CADDY_MANAGE``) it also starts and supervises this machine's Caddy."""

    name = "caddy"

    def __init__(self, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> None:
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._http_port = 8080
        self._locks: dict[str, asyncio.Lock] = {}
        self.managed: ManagedCaddy | None = None
        """This machine's Caddy when Digi runs it (``DIGI_CADDY_MANAGE``), else ``None``."""

    async def start(self, settings: Settings) -> None:
        """Open the admin API session; with ``caddy_manage``, also start this machine's Caddy
        (or adopt one that already answers at ``caddy_admin_url``) and add Digi's server."""
        if self._session is not None:
            return
        from digi_caddy.process import ManagedCaddy

        self._http_port = settings.http_port
        self._session = aiohttp.ClientSession(
            timeout=ADMIN_TIMEOUT, trace_configs=self._trace_configs or None
        )
        if not settings.caddy_manage:
            return
        try:
            admin_url = settings.caddy_admin_url
            self.managed = ManagedCaddy(
                settings, self._session, on_ready=lambda: self.ensure_server(admin_url)
            )
            await self.managed.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the Caddy Digi started (a reused one keeps running), then the session."""
        if self.managed is not None:
            await self.managed.close()
            self.managed = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def set_routes(self, host: Host, routes: Sequence[Route]) -> None:
        """One existing route: swap its upstream in place (one request). Otherwise (several
        routes, a new one, or one reshaped by hand): one GET and one PATCH of the whole routes
        array, none when nothing changes."""
        wanted = _checked(routes)
        if not wanted:
            return
        async with self._lock(host.caddy_admin_url):
            if len(wanted) == 1:
                ((key, route),) = wanted.items()
                try:
                    await self._admin(
                        host.caddy_admin_url,
                        "PATCH",
                        f"/id/{key}/handle/0/upstreams",
                        [{"dial": route.upstream}],
                    )
                    return
                except CaddyAdminError as error:
                    # 404: no route with that @id yet; 500 "key does not exist": a route
                    # reshaped by hand. Both are fixed by rewriting the routes array.
                    if error.status is None:
                        raise
            await self._edit_routes(host.caddy_admin_url, lambda current: _merged(current, wanted))

    async def remove_routes(self, host: Host, hostnames: Sequence[str]) -> None:
        """One hostname: one DELETE (Caddy's 404 for an unknown @id is success). Several: one
        GET and one PATCH without them."""
        keys = {route_id(hostname) for hostname in hostnames}
        if not keys:
            return
        async with self._lock(host.caddy_admin_url):
            if len(keys) == 1:
                try:
                    await self._admin(host.caddy_admin_url, "DELETE", f"/id/{keys.pop()}")
                except CaddyAdminError as error:
                    if error.status != 404:
                        raise
                return
            await self._edit_routes(
                host.caddy_admin_url,
                lambda current: [
                    item
                    for item in current
                    if not (isinstance(item, dict) and item.get("@id") in keys)
                ],
            )

    async def routes(self, host: Host) -> list[Route]:
        """Digi's routes on the host's Caddy (by ``@id`` prefix), in Caddy's order."""
        found = [
            _as_route(item)
            for item in await self._current_routes(host.caddy_admin_url) or []
            if isinstance(item, dict) and str(item.get("@id", "")).startswith(ROUTE_ID_PREFIX)
        ]
        return [route for route in found if route is not None]

    async def sync(self, host: Host, routes: Sequence[Route]) -> None:
        """Replace the whole routes array of Digi's server in one request: routes added by
        hand on that server go away, the fallback stays last."""
        wanted = [caddy_route(route) for route in _checked(routes).values()]
        async with self._lock(host.caddy_admin_url):
            await self._write_routes(host.caddy_admin_url, [*wanted, fallback_route()])

    async def ensure_server(self, admin_url: str) -> bool:
        """Make sure Digi's server and its fallback exist on the Caddy at ``admin_url``, as
        they must be (listen port, no automatic HTTPS, fallback once and last).

        Idempotent: one GET when all is in place. Returns whether it changed anything.
        The router calls it itself after starting Caddy and when a write finds no server.
        """
        async with self._lock(admin_url):
            return await self._ensure_server(admin_url)

    async def _ensure_server(self, admin_url: str) -> bool:
        apps = await self._admin(admin_url, "GET", "/config/apps")
        # Caddy's PUT creates a key and refuses one that exists, at the deepest level present.
        http = apps.get("http") if isinstance(apps, dict) else None
        servers = http.get("servers") if isinstance(http, dict) else None
        server = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
        created = digi_server(self._http_port)
        if apps is None:
            await self._admin(
                admin_url, "PUT", "/config/apps", {"http": {"servers": {SERVER_NAME: created}}}
            )
        elif http is None:
            await self._admin(
                admin_url, "PUT", "/config/apps/http", {"servers": {SERVER_NAME: created}}
            )
        elif servers is None:
            await self._admin(admin_url, "PUT", "/config/apps/http/servers", {SERVER_NAME: created})
        elif server is None:
            await self._admin(admin_url, "PUT", SERVER_PATH, created)
        else:
            repaired = _repaired_server(server, self._http_port)
            if repaired == server:
                return False
            await self._admin(admin_url, "PATCH", SERVER_PATH, repaired)
        log.info("Digi's server on the Caddy at %s was created or repaired", admin_url)
        return True

    async def _edit_routes(
        self, admin_url: str, change: Callable[[list[CaddyJson]], list[CaddyJson]]
    ) -> None:
        current = await self._current_routes(admin_url)
        if current is None:
            await self._ensure_server(admin_url)
            current = await self._current_routes(admin_url) or []
        changed = change(current)
        if changed != current:
            await self._write_routes(admin_url, changed)

    async def _current_routes(self, admin_url: str) -> list[CaddyJson] | None:
        """The routes array of Digi's server, ``None`` when that server does not exist."""
        try:
            current = await self._admin(admin_url, "GET", ROUTES_PATH)
        except CaddyAdminError as error:
            if error.status != 400:  # 400: "invalid traversal path", apps.http is missing
                raise
            return None
        return current if isinstance(current, list) else None

    async def _write_routes(self, admin_url: str, routes: list[CaddyJson]) -> None:
        """PATCH the whole array; when Digi's server is missing, create it and try once more."""
        try:
            await self._admin(admin_url, "PATCH", ROUTES_PATH, routes)
        except CaddyAdminError:
            if not await self._ensure_server(admin_url):
                raise
            await self._admin(admin_url, "PATCH", ROUTES_PATH, routes)

    def _lock(self, admin_url: str) -> asyncio.Lock:
        """One change at a time per Caddy: a GET-then-PATCH must not lose a concurrent one."""
        return self._locks.setdefault(admin_url, asyncio.Lock())

    async def _admin(
        self, admin_url: str, method: str, path: str, body: CaddyJson = None
    ) -> CaddyJson:
        """One admin API request; Caddy's answer parsed, or a CaddyAdminError saying why not."""
        if self._session is None:
            raise RuntimeError("CaddyRouter.start() was not called")
        url = admin_url.rstrip("/") + path
        for attempt in range(ADMIN_ATTEMPTS):
            try:
                async with self._session.request(method, url, json=body) as response:
                    text = await response.text()
                break
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as error:
                # Caddy replaces its admin server on every config change and stops the old
                # one in the background: a connection made just then can be reset
                # (caddyserver/caddy#4184). Such a request was not applied; send it again.
                if attempt + 1 < ADMIN_ATTEMPTS:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise _unreachable(admin_url, error) from error
            except (aiohttp.ClientError, TimeoutError) as error:
                raise _unreachable(admin_url, error) from error
        if response.status >= 400:
            raise CaddyAdminError(
                f"Caddy at {admin_url} refused {method} {path} (HTTP {response.status}: "
                f"{_caddy_message(text)}); its previous config keeps serving. Check the route "
                "and Caddy's log.",
                status=response.status,
            )
        return json.loads(text) if text.strip() else None


def _unreachable(admin_url: str, error: Exception) -> CaddyAdminError:
    return CaddyAdminError(
        f"Caddy's admin API at {admin_url} does not answer ({error or type(error).__name__}): "
        "start Caddy there (digi server does when DIGI_CADDY_MANAGE is on) or check "
        "DIGI_CADDY_ADMIN_URL and the connection to the host."
    )


def _caddy_message(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    return str(answer.get("error", answer) if isinstance(answer, dict) else answer)[:300]

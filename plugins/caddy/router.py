"""The Caddy router, in two tiers.

Each host's Caddy (JSON admin API) has one server ``apps.http.servers.digi`` on
``:<DIGI_HTTP_PORT>``: one route per hostname (``@id`` derived from the hostname) and, always
last, a catch-all ``digi-fallback`` that answers 404. A hostname's route does not name its
container: it looks up ``<hostname>.u.digi.internal`` in Digi's internal DNS zone
(``dynamic_upstreams``), so a redeploy changes a record and never Caddy's config, which Caddy
reloads whole (resetting a connection that arrives just then). A stopped, failed or suspended
app's route answers a 503 page instead.

The public tier (the master Caddy at ``MASTER_CADDY_URL``; on the embedded default, this
machine's Caddy when TLS is on) holds one route for every hostname: it looks up
``<Host header>.r.digi.internal``, the host that runs it. A new app changes a record there,
not the master's config. TLS certificates come on demand, for names Digi's API vouches for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from digi_core import internal_dns
from digi_core.config import TlsMode
from digi_core.errors import BadUserInput, DigiError
from digi_core.names import LABEL, MAX_DOMAIN_LENGTH
from digi_core.providers import Host, Route, Router, Unavailable

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
UPSTREAM_ZONE = f"u.{internal_dns.ZONE}"  # <hostname>.u… -> its container on the host
ROUTED_ZONE = f"r.{internal_dns.ZONE}"  # <hostname>.r… -> the host that runs it
MAX_HOSTNAME_LENGTH = MAX_DOMAIN_LENGTH - len(UPSTREAM_ZONE) - 1
PUBLIC_SERVER = "digi-public"
# A hostname's host changes only when the service moves (a redeploy moves its container,
# not its host): the public tier can keep answers longer and ask the zone less.
PUBLIC_REFRESH = "5s"
PUBLIC_HTTP_SERVER = "digi-public-http"
UNAVAILABLE_HEADER = "X-Digi-Unavailable"
UNAVAILABLE_TEXT = {
    Unavailable.NOT_DEPLOYED: "This app has not been deployed yet.",
    Unavailable.STOPPED: "This app is stopped. Its owner can start it again.",
    Unavailable.FAILED: "This app's last deploy failed and nothing is running.",
    Unavailable.SUSPENDED: "This app is suspended.",
}
PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
    '<body style="font-family:sans-serif;margin:4em auto;max-width:36em">'
    "<h1>{title}</h1><p>{text}</p></body></html>\n"
)
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
        and 0 < len(hostname) <= MAX_HOSTNAME_LENGTH
        and all(LABEL.fullmatch(label) for label in hostname.split("."))
    ):
        return hostname
    shown = repr(hostname)[:80]
    raise BadUserInput(
        f"hostname {shown} cannot be routed: use dot-separated labels of 1-63 lowercase "
        f"letters, digits and inner hyphens (at most {MAX_HOSTNAME_LENGTH} characters, no "
        "wildcard, no trailing dot); lowercase it first if it has capitals.",
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


def _ip_and_port(upstream: str) -> tuple[str | None, str]:
    """The IP of an ``ip:port`` upstream (``None`` for ``name:port``) and its port."""
    host, _, port = validate_upstream(upstream).rpartition(":")
    host = host.strip("[]")
    return (host if _is_ip(host, version=4) or _is_ip(host, version=6) else None), port


def _page(status: int, title: str, text: str, headers: dict[str, list[str]]) -> CaddyJson:
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/html; charset=utf-8"], **headers},
        "body": PAGE.format(title=title, text=text),
    }


class CaddyLayout:
    """The JSON Digi puts on Caddy, for one installation's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        zone = settings.internal_dns_public or settings.internal_dns
        internal_dns.listen_address(zone)
        self.resolver = {"addresses": [f"udp/{zone}"]}
        self.refresh = f"{settings.route_refresh}s"

    def dynamic(self, name: str, port: str, refresh: str | None = None) -> CaddyJson:
        """A reverse proxy to whatever ``name`` resolves to in the internal zone."""
        return {
            "handler": "reverse_proxy",
            "dynamic_upstreams": {
                "source": "a",
                "name": name,
                "port": port,
                "refresh": refresh or self.refresh,
                "resolver": self.resolver,
            },
        }

    def route(self, route: Route) -> CaddyJson:
        """One hostname's route on its host's Caddy."""
        if route.upstream is None:
            reason = route.unavailable or Unavailable.NOT_DEPLOYED
            handler = _page(
                503,
                "Service unavailable",
                UNAVAILABLE_TEXT[reason],
                {UNAVAILABLE_HEADER: [reason.value], "Retry-After": ["30"]},
            )
        else:
            ip, port = _ip_and_port(route.upstream)
            if ip is None:
                handler = {"handler": "reverse_proxy", "upstreams": [{"dial": route.upstream}]}
            else:
                handler = self.dynamic(f"{route.hostname}.{UPSTREAM_ZONE}", port)
        return {
            "@id": route_id(route.hostname),
            "match": [{"host": [route.hostname]}],
            "handle": [handler],
            "terminal": True,
        }

    def public_config(self, config: CaddyJson, *, separate: bool) -> CaddyJson:
        """``config`` (a whole Caddy config) with the public tier's servers as they must be:
        on the master (``separate``) or beside the host tier on this machine's Caddy."""
        settings = self.settings
        tls = settings.tls is not TlsMode.OFF
        config = json.loads(json.dumps(config or {}))
        apps = config.setdefault("apps", {})
        http = apps.setdefault("http", {})
        servers = http.setdefault("servers", {})
        proxy = {
            "@id": "digi-public-route",
            "handle": [
                self.dynamic(
                    f"{{http.request.host}}.{ROUTED_ZONE}",
                    str(settings.http_port),
                    PUBLIC_REFRESH,
                )
            ],
        }
        errors = {
            "routes": [
                {
                    "handle": [
                        _page(
                            502,
                            "No app here",
                            "No app answers at this address right now.",
                            {"Retry-After": ["30"]},
                        )
                    ]
                }
            ]
        }
        http_port = settings.master_http_port if separate else settings.http_port
        https_port = settings.master_https_port if separate else settings.https_port
        if tls:
            servers[PUBLIC_SERVER] = {
                "listen": [f":{https_port}"],
                "routes": [proxy],
                "errors": errors,
                "tls_connection_policies": [{}],
                "automatic_https": {"disable": True},
            }
            http["http_port"], http["https_port"] = http_port, https_port
            apps["tls"] = {
                "automation": {
                    "policies": [{"on_demand": True, "issuers": [self.issuer()]}],
                    "on_demand": {"ask": f"{settings.internal_api_url}/internal/tls/ask"},
                }
            }
            apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
        else:
            servers.pop(PUBLIC_SERVER, None)
        if separate:
            port = "" if https_port == 443 else f":{https_port}"
            location = f"https://{{http.request.host}}{port}{{http.request.uri}}"
            redirect = {"handler": "static_response", "status_code": 308}
            redirect["headers"] = {"Location": [location]}
            servers[PUBLIC_HTTP_SERVER] = {
                "listen": [f":{http_port}"],
                "routes": [{"handle": [redirect]}] if tls else [proxy],
                "errors": errors,
                "automatic_https": {"disable": True},
            }
        return config

    def issuer(self) -> CaddyJson:
        if self.settings.tls is TlsMode.INTERNAL:
            return {"module": "internal"}
        issuer: CaddyJson = {"module": "acme"}
        if self.settings.acme_email:
            issuer["email"] = self.settings.acme_email
        if self.settings.acme_ca:
            issuer["ca"] = self.settings.acme_ca
        return issuer


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
        if route.upstream is not None:
            validate_upstream(route.upstream)
        elif route.unavailable is not None and route.unavailable not in UNAVAILABLE_TEXT:
            raise BadUserInput(f"unknown reason {route.unavailable!r}", field="unavailable")
        checked[route_id(route.hostname)] = route
    return checked


def _merged(current: list[CaddyJson], wanted: dict[str, CaddyJson]) -> list[CaddyJson]:
    """``current`` with ``wanted`` replaced in place or added, duplicates dropped, fallback last."""
    merged: list[CaddyJson] = []
    seen: set[str] = set()
    for item in current:
        item_id = item.get("@id") if isinstance(item, dict) else None
        if item_id == FALLBACK_ID or (item_id is not None and item_id in seen):
            continue
        if item_id is not None:
            seen.add(item_id)
        merged.append(wanted.get(item_id, item) if item_id is not None else item)
    merged.extend(item for key, item in wanted.items() if key not in seen)
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


def _as_route(item: CaddyJson, records: dict[str, tuple[str, ...]]) -> Route | None:
    """The Route a Digi route carries (its container from the zone's ``records``), or
    ``None`` when it was edited out of shape by hand."""
    try:
        hostname = item["match"][0]["host"][0]
        handler = item["handle"][0]
        if route_id(hostname) != item["@id"]:
            raise ValueError
        if handler["handler"] == "static_response":
            reason = handler["headers"][UNAVAILABLE_HEADER][0]
            return Route(hostname, None, Unavailable(reason))
        if "dynamic_upstreams" in handler:
            found = records.get(handler["dynamic_upstreams"]["name"], ())
            ip = f"[{found[0]}]" if found and ":" in found[0] else (found or [None])[0]
            port = handler["dynamic_upstreams"]["port"]
            return Route(hostname, f"{ip}:{port}" if ip else None)
        return Route(hostname, handler["upstreams"][0]["dial"])
    except (KeyError, IndexError, TypeError, ValueError, DigiError):
        pass
    log.warning("ignoring the malformed Digi route %r on Caddy", item.get("@id"))
    return None


def _host_ip(host: Host) -> str:
    """Where the public tier sends the host's hostnames (its Caddy listens on the HTTP port)."""
    ip, _ = _ip_and_port(host.upstream)
    if ip is None:
        raise CaddyAdminError(f"host {host.id} has no IP address to route to ({host.upstream})")
    return ip


class CaddyRouter(Router):
    """Drives each host's Caddy (and the public tier's) through the admin API and the names
    of Digi's internal DNS zone; on the embedded default (``DIGI_CADDY_MANAGE``) it also
    starts and supervises this machine's Caddy."""

    name = "caddy"

    def __init__(self, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> None:
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._http_port = 8080
        self._locks: dict[str, asyncio.Lock] = {}
        self._admin_hosts: dict[str, str] = {}  # admin URL -> the Host header Caddy wants
        self._layout: CaddyLayout | None = None
        self._public: tuple[str, bool] | None = None  # admin URL, a separate master?
        self.managed: ManagedCaddy | None = None
        """This machine's Caddy when Digi runs it (``DIGI_CADDY_MANAGE``), else ``None``."""

    async def start(self, settings: Settings) -> None:
        """Open the admin API session; with ``caddy_manage``, also start this machine's Caddy
        (or adopt one that already answers at ``caddy_admin_url``) and add Digi's server;
        put the public tier in place on the master (or this machine's Caddy, for TLS)."""
        if self._session is not None:
            return
        from digi_caddy.process import ManagedCaddy

        self._http_port = settings.http_port
        self._layout = CaddyLayout(settings)
        # A cached lookup lives ``refresh``; another process's write takes a poll to be served.
        self.settle_seconds = settings.route_refresh + internal_dns.POLL_SECONDS + 0.2
        if settings.master_caddy_url:
            self._public = (settings.master_caddy_url, True)
        elif settings.tls is not TlsMode.OFF:
            self._public = (settings.caddy_admin_url, False)
        self._session = aiohttp.ClientSession(
            timeout=ADMIN_TIMEOUT, trace_configs=self._trace_configs or None
        )
        try:
            if settings.caddy_manage:
                admin_url = settings.caddy_admin_url
                self.managed = ManagedCaddy(
                    settings, self._session, on_ready=lambda: self._ready(admin_url)
                )
                await self.managed.start()
            elif self._public is not None and self._public[1]:
                await self.ensure_public()
        except BaseException:
            await self.close()
            raise

    async def _ready(self, admin_url: str) -> None:
        await self.ensure_server(admin_url)
        if self._public is not None:
            await self.ensure_public()

    async def close(self) -> None:
        """Stop the Caddy Digi started (a reused one keeps running), then the session."""
        if self.managed is not None:
            await self.managed.close()
            self.managed = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def layout(self) -> CaddyLayout:
        if self._layout is None:
            raise RuntimeError("CaddyRouter.start() was not called")
        return self._layout

    async def set_routes(self, host: Host, routes: Sequence[Route]) -> None:
        """Records first (a redeploy changes only its record). One route: see ``_set_one``.
        Several: one GET of the host's routes and, when some route is new or reshaped, one
        PATCH of the whole array."""
        self._remember(host)
        wanted = _checked(routes)
        if not wanted:
            return
        routes_json = {key: self.layout.route(route) for key, route in wanted.items()}
        records = self._set_records(host, list(wanted.values()))
        async with self._lock(host.caddy_admin_url):
            if len(routes_json) == 1:
                if await self._set_one(host.caddy_admin_url, routes_json, records):
                    return
            else:
                await records
            await self._edit_routes(
                host.caddy_admin_url, lambda current: _merged(current, routes_json)
            )

    async def _set_one(
        self, admin_url: str, routes_json: dict[str, CaddyJson], records: Awaitable[None]
    ) -> bool:
        """One route by its ``@id``: a GET of it (while its records are written), then
        nothing (a redeploy: only its record moved), a PATCH in place, or a PUT before the
        others. ``False`` when Digi's server is missing (the caller rewrites the array)."""
        ((key, wanted),) = routes_json.items()
        found, written = await asyncio.gather(
            self._admin(admin_url, "GET", f"/id/{key}"), records, return_exceptions=True
        )
        if isinstance(written, BaseException):
            raise written
        if isinstance(found, CaddyAdminError) and found.status == 404:
            current = None
        elif isinstance(found, BaseException):
            raise found
        else:
            current = found
        if current == wanted:
            return True
        try:
            if current is None:
                await self._admin(admin_url, "PUT", f"{ROUTES_PATH}/0", wanted)
            else:
                await self._admin(admin_url, "PATCH", f"/id/{key}", wanted)
        except CaddyAdminError as error:
            if error.status is None:
                raise
            return False
        return True

    async def remove_routes(self, host: Host, hostnames: Sequence[str]) -> None:
        """One hostname: one DELETE (Caddy's 404 for an unknown @id is success). Several: one
        GET and one PATCH without them. Their records go too."""
        self._remember(host)
        keys = {route_id(hostname) for hostname in hostnames}
        if not keys:
            return
        async with self._lock(host.caddy_admin_url):
            if len(keys) == 1:
                try:
                    await self._admin(host.caddy_admin_url, "DELETE", f"/id/{next(iter(keys))}")
                except CaddyAdminError as error:
                    if error.status != 404:
                        raise
            else:
                await self._edit_routes(
                    host.caddy_admin_url,
                    lambda current: [
                        item
                        for item in current
                        if not (isinstance(item, dict) and item.get("@id") in keys)
                    ],
                )
        await internal_dns.remove_records(
            f"{hostname}.{zone}" for hostname in hostnames for zone in (UPSTREAM_ZONE, ROUTED_ZONE)
        )

    async def routes(self, host: Host) -> list[Route]:
        """Digi's routes on the host's Caddy (by ``@id`` prefix), in Caddy's order, with the
        containers their records name."""
        self._remember(host)
        records = await internal_dns.host_records(host.id, "." + UPSTREAM_ZONE)
        found = [
            _as_route(item, records)
            for item in await self._current_routes(host.caddy_admin_url) or []
            if isinstance(item, dict) and str(item.get("@id", "")).startswith(ROUTE_ID_PREFIX)
        ]
        return [route for route in found if route is not None]

    async def sync(self, host: Host, routes: Sequence[Route]) -> None:
        """Make the host's records and routes exactly ``routes`` (routes added by hand on
        Digi's server go, the fallback stays last); write nothing that is right already.
        The public tier's servers are checked too (a master that restarted gets them back)."""
        self._remember(host)
        checked = _checked(routes)
        upstreams, routed = self._records(host, list(checked.values()))
        await internal_dns.sync_records(host.id, "." + UPSTREAM_ZONE, upstreams)
        await internal_dns.sync_records(host.id, "." + ROUTED_ZONE, routed)
        wanted = [self.layout.route(route) for route in checked.values()]
        async with self._lock(host.caddy_admin_url):
            await self._edit_routes(host.caddy_admin_url, lambda _: [*wanted, fallback_route()])
        if self._public is not None:
            await self.ensure_public()

    def _records(
        self, host: Host, routes: Sequence[Route]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The zone's records for ``routes``: each container, and (public tier) the host."""
        upstreams = {}
        for route in routes:
            ip = _ip_and_port(route.upstream)[0] if route.upstream else None
            if ip is not None:
                upstreams[f"{route.hostname}.{UPSTREAM_ZONE}"] = [ip]
        routed = {}
        if self._public is not None:
            routed = {f"{route.hostname}.{ROUTED_ZONE}": [_host_ip(host)] for route in routes}
        return upstreams, routed

    async def _set_records(self, host: Host, routes: Sequence[Route]) -> None:
        upstreams, routed = self._records(host, routes)
        await internal_dns.set_records(host.id, upstreams | routed)
        await internal_dns.remove_records(
            f"{route.hostname}.{UPSTREAM_ZONE}"
            for route in routes
            if f"{route.hostname}.{UPSTREAM_ZONE}" not in upstreams
        )

    async def ensure_public(self) -> bool:
        """Put the public tier's servers (and TLS) in place; one GET when all is right."""
        if self._public is None:
            return False
        admin_url, separate = self._public
        async with self._lock(admin_url):
            config = await self._admin(admin_url, "GET", "/config/") or {}
            wanted = self.layout.public_config(config, separate=separate)
            if wanted == config:
                return False
            await self._admin(admin_url, "POST", "/load", wanted)
        log.info("the public tier on the Caddy at %s was created or repaired", admin_url)
        return True

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

    def _remember(self, host: Host) -> None:
        if host.caddy_admin_host:
            self._admin_hosts[host.caddy_admin_url] = host.caddy_admin_host

    async def _admin(
        self, admin_url: str, method: str, path: str, body: CaddyJson = None
    ) -> CaddyJson:
        """One admin API request; Caddy's answer parsed, or a CaddyAdminError saying why not."""
        if self._session is None:
            raise RuntimeError("CaddyRouter.start() was not called")
        url = admin_url.rstrip("/") + path
        # Through a forward, Caddy's admin API still checks the Host header (DNS rebinding).
        wanted_host = self._admin_hosts.get(admin_url)
        headers = {"Host": wanted_host} if wanted_host else None
        for attempt in range(ADMIN_ATTEMPTS):
            try:
                async with self._session.request(
                    method, url, json=body, headers=headers
                ) as response:
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

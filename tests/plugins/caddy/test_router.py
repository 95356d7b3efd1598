"""The Caddy router against the real caddy binary: routes, fallback, batches, sync, validation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from digi_caddy.router import (
    FALLBACK_BODY,
    FALLBACK_ID,
    ROUTES_PATH,
    UPSTREAM_ZONE,
    CaddyAdminError,
    CaddyRouter,
    route_id,
)
from digi_core import internal_dns
from digi_core.config import Settings
from digi_core.internal_dns import ZoneServer
from digi_core.providers import Host, Route, Unavailable
from tests.plugins.caddy.conftest import (
    AdminRequests,
    StartUpstream,
    answers,
    caddy_settings,
    fetch,
    free_port,
    host_of,
)


async def admin(host: Host, method: str, path: str, body: object = None) -> object:
    """The admin API by hand, the way an operator (or drift) changes Caddy behind Digi."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, host.caddy_admin_url + path, json=body) as response,
    ):
        assert response.status < 400, await response.text()
        return await response.json() if response.content_length != 0 else None


async def route_ids(host: Host) -> list[str]:
    routes = await admin(host, "GET", ROUTES_PATH)
    assert isinstance(routes, list)
    return [str(item.get("@id")) for item in routes]


async def test_an_unknown_hostname_gets_the_fallback_text(
    router: CaddyRouter, host: Host, settings: Settings
) -> None:
    await answers(settings, "nothing-here.example.com", (404, FALLBACK_BODY))
    assert "No app is deployed at this address" in FALLBACK_BODY


async def test_a_redeploy_changes_a_record_and_never_caddys_config(
    router: CaddyRouter,
    host: Host,
    settings: Settings,
    start_upstream: StartUpstream,
    admin_requests: AdminRequests,
) -> None:
    """Caddy reloads its whole config on every change: only new or reshaped routes write."""
    upstream = await start_upstream("web")
    batch = [Route(f"app-{number}.example.com", upstream) for number in range(50)]
    admin_requests.clear()
    await router.set_routes(host, batch)
    assert admin_requests == [("GET", ROUTES_PATH), ("PATCH", ROUTES_PATH)]

    admin_requests.clear()
    await router.set_routes(host, batch)  # nothing changes: nothing is written
    assert admin_requests == [("GET", ROUTES_PATH)]

    other = await start_upstream("other", upstream)
    admin_requests.clear()
    await router.set_routes(host, [Route("app-7.example.com", other)])
    app_7 = f"/id/{route_id('app-7.example.com')}"
    assert admin_requests == [("GET", app_7)]  # a new container: only its record moves

    admin_requests.clear()
    await router.set_routes(host, [Route("app-7.example.com", None, Unavailable.STOPPED)])
    assert admin_requests == [("GET", app_7), ("PATCH", app_7)]  # reshaped in place
    await router.set_routes(host, [Route("app-7.example.com", other)])

    admin_requests.clear()
    await router.set_routes(host, [Route("new.example.com", other)])
    new = f"/id/{route_id('new.example.com')}"
    assert admin_requests == [("GET", new), ("PUT", ROUTES_PATH + "/0")]  # 404, then added

    await asyncio.sleep(router.settle_seconds)
    statuses = await asyncio.gather(*(fetch(settings, route.hostname) for route in batch))
    assert [text.split()[0] for _, text in statuses].count("web") == 49
    assert statuses[7] == (200, "other app-7.example.com")
    assert len(await router.routes(host)) == 51


async def test_routes_reads_what_caddy_and_the_zone_hold_and_only_digis(
    router: CaddyRouter, host: Host, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("web")
    await router.set_routes(host, [Route("mine.example.com", upstream)])
    await admin(host, "PUT", ROUTES_PATH + "/0", hand_made_route("by-hand.example.com", upstream))
    assert await router.routes(host) == [Route("mine.example.com", upstream)]
    await internal_dns.remove_records([f"mine.example.com.{UPSTREAM_ZONE}"])
    assert await router.routes(host) == [Route("mine.example.com", None)]  # sync repairs it


def hand_made_route(hostname: str, upstream: str) -> dict[str, object]:
    return {
        "@id": "operator-" + hostname.replace(".", "-"),
        "match": [{"host": [hostname]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}],
    }


async def test_sync_makes_the_host_hold_exactly_the_given_routes(
    router: CaddyRouter,
    host: Host,
    settings: Settings,
    start_upstream: StartUpstream,
    admin_requests: AdminRequests,
) -> None:
    upstream = await start_upstream("web")
    wanted = [Route("kept.example.com", upstream), Route("lost.example.com", upstream)]
    await router.sync(host, wanted)
    await admin(host, "PUT", ROUTES_PATH + "/0", hand_made_route("by-hand.example.com", upstream))
    await admin(host, "DELETE", f"/id/{route_id('lost.example.com')}")
    await answers(settings, "by-hand.example.com", (200, "web by-hand.example.com"))
    await answers(settings, "lost.example.com", (404, FALLBACK_BODY))

    admin_requests.clear()
    await router.sync(host, wanted)
    assert admin_requests == [("GET", ROUTES_PATH), ("PATCH", ROUTES_PATH)]
    admin_requests.clear()
    await router.sync(host, wanted)  # in line: nothing is written
    assert admin_requests == [("GET", ROUTES_PATH)]
    assert await route_ids(host) == [
        route_id("kept.example.com"),
        route_id("lost.example.com"),
        FALLBACK_ID,
    ]
    await answers(settings, "by-hand.example.com", (404, FALLBACK_BODY))
    await answers(settings, "lost.example.com", (200, "web lost.example.com"))
    await router.sync(host, [])
    assert await route_ids(host) == [FALLBACK_ID]


async def test_a_caddy_without_digis_server_gets_one(
    bare_caddy: str, clean_env: Path, start_upstream: StartUpstream, zone: ZoneServer
) -> None:
    """A host whose Caddy Digi did not start: the router only talks to its admin API."""
    settings = caddy_settings(
        clean_env / "data", DIGI_CADDY_MANAGE=False, DIGI_CADDY_ADMIN_URL=bare_caddy
    )
    router = CaddyRouter()
    await router.start(settings)
    try:
        assert router.managed is None
        host = host_of(settings)
        assert await router.routes(host) == []
        await router.set_routes(host, [Route("late.example.com", await start_upstream("web"))])
        await answers(settings, "late.example.com", (200, "web late.example.com"))
        await answers(settings, "other.example.com", (404, FALLBACK_BODY))
        assert await router.ensure_server(bare_caddy) is False  # all in place: nothing written
        server = await admin(host, "GET", "/config/apps/http/servers/digi")
        assert isinstance(server, dict)
        assert server["listen"] == [f":{settings.http_port}"]
        assert server["automatic_https"] == {"disable": True}
    finally:
        await router.close()


async def test_ensure_server_puts_a_lost_fallback_back_last(
    router: CaddyRouter, host: Host, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("web")
    await router.set_routes(host, [Route("a.example.com", upstream)])
    await admin(host, "DELETE", f"/id/{FALLBACK_ID}")
    await admin(host, "PUT", ROUTES_PATH + "/0", {"@id": FALLBACK_ID, "handle": []})
    assert await router.ensure_server(host.caddy_admin_url) is True
    assert await route_ids(host) == [route_id("a.example.com"), FALLBACK_ID]
    assert await router.ensure_server(host.caddy_admin_url) is False


async def test_an_unreachable_admin_api_says_what_to_do(clean_env: Path, zone: ZoneServer) -> None:
    settings = caddy_settings(clean_env / "data", DIGI_CADDY_MANAGE=False)
    router = CaddyRouter()
    await router.start(settings)
    try:
        started = time.monotonic()
        with pytest.raises(CaddyAdminError, match=r"does not answer.*DIGI_CADDY_ADMIN_URL"):
            await router.routes(host_of(settings))
        assert time.monotonic() - started < 5
    finally:
        await router.close()


async def test_set_routes_repairs_a_route_mangled_by_hand(
    router: CaddyRouter, host: Host, settings: Settings, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("web")
    await router.set_routes(host, [Route("mangled.example.com", upstream)])
    await admin(host, "PATCH", f"/id/{route_id('mangled.example.com')}/handle", [
        {"handler": "static_response", "body": "hijacked"}
    ])  # fmt: skip
    await router.set_routes(host, [Route("mangled.example.com", upstream)])
    await answers(settings, "mangled.example.com", (200, "web mangled.example.com"))


async def test_sync_on_a_caddy_without_digis_server_creates_it(
    bare_caddy: str, clean_env: Path, start_upstream: StartUpstream, zone: ZoneServer
) -> None:
    settings = caddy_settings(
        clean_env / "data", DIGI_CADDY_MANAGE=False, DIGI_CADDY_ADMIN_URL=bare_caddy
    )
    router = CaddyRouter()
    await router.start(settings)
    try:
        await router.sync(host_of(settings), [Route("s.example.com", await start_upstream("web"))])
        await answers(settings, "s.example.com", (200, "web s.example.com"))
        await answers(settings, "t.example.com", (404, FALLBACK_BODY))
    finally:
        await router.close()


async def test_a_new_hostname_answers_through_the_master_without_a_request_to_it(
    bare_caddy: str, clean_env: Path, start_upstream: StartUpstream, zone: ZoneServer
) -> None:
    """The master holds one route that looks hostnames up: routing a new one writes a
    record and the host's Caddy, never the master."""
    master_port = free_port()
    settings = caddy_settings(
        clean_env / "data", MASTER_CADDY_URL=bare_caddy, DIGI_MASTER_HTTP_PORT=master_port
    )
    requests = AdminRequests()
    router = CaddyRouter(trace_configs=[requests.trace_config()])
    await router.start(settings)
    try:
        master_admin = int(bare_caddy.rpartition(":")[2])
        assert ("POST", "/load") in requests  # the public tier, put on the master once
        requests.clear()
        host = host_of(settings)
        upstream = await start_upstream("web")
        for name in ("one.example.com", "two.example.com"):
            await router.set_routes(host, [Route(name, upstream)])
            through_master = settings.model_copy(update={"http_port": master_port})
            await answers(through_master, name, (200, f"web {name}"))
        assert [url for url in requests.urls if url.port == master_admin] == []
        assert await router.ensure_public() is False  # in place: one GET, nothing written
    finally:
        await router.close()

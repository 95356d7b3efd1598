"""The Caddy router against the real caddy binary: routes, fallback, batches, sync, validation."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import aiohttp
import pytest

from digi_caddy.router import (
    FALLBACK_BODY,
    FALLBACK_ID,
    ROUTES_PATH,
    CaddyAdminError,
    CaddyRouter,
    route_id,
)
from digi_core.config import Settings
from digi_core.errors import BadUserInput
from digi_core.providers import Host, Route
from tests.plugins.caddy.conftest import (
    AdminRequests,
    StartUpstream,
    answers,
    caddy_settings,
    fetch,
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


async def test_a_routed_hostname_reaches_its_upstream_with_its_host_header(
    router: CaddyRouter, host: Host, settings: Settings, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("blue")
    await router.set_routes(host, [Route("app-x1.example.com", upstream)])
    await answers(settings, "app-x1.example.com", (200, "blue app-x1.example.com"))


async def test_an_unknown_hostname_gets_the_fallback_text(
    router: CaddyRouter, host: Host, settings: Settings
) -> None:
    await answers(settings, "nothing-here.example.com", (404, FALLBACK_BODY))
    assert "No app is deployed at this address" in FALLBACK_BODY


async def test_replacing_an_upstream_under_load_fails_no_request(
    router: CaddyRouter, host: Host, settings: Settings, start_upstream: StartUpstream
) -> None:
    blue, green = await start_upstream("blue"), await start_upstream("green")
    hostname = "busy.example.com"
    await router.set_routes(host, [Route(hostname, blue)])
    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        # Keep-alive connections, like a browser: they must survive Caddy's reloads too.
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(
                        f"http://127.0.0.1:{settings.http_port}/", headers={"Host": hostname}
                    ) as response:
                        text = await response.text()
                        if response.status != 200:
                            failures.append(f"{response.status} {text}")
                        answers.append(text.split()[0])
                except aiohttp.ClientError as error:
                    failures.append(repr(error))

    clients = [asyncio.create_task(client()) for _ in range(2)]
    for upstream in (green, blue, green, blue, green):
        await asyncio.sleep(0.25)
        await router.set_routes(host, [Route(hostname, upstream)])
    await asyncio.sleep(0.25)
    stop.set()
    await asyncio.gather(*clients)
    assert failures == []
    assert len(answers) > 200
    switches = sum(1 for before, after in itertools.pairwise(answers) if before != after)
    assert switches >= 5 and answers[-1] == "green"


async def test_set_routes_is_idempotent_and_never_duplicates_an_id(
    router: CaddyRouter, host: Host, start_upstream: StartUpstream
) -> None:
    first, second = await start_upstream("first"), await start_upstream("second")
    routes = [Route("a.example.com", first), Route("b.example.com", first)]
    await router.set_routes(host, routes)
    await router.set_routes(host, routes)
    await router.set_routes(host, [Route("a.example.com", second)])
    await router.set_routes(host, [Route("b.example.com", second), Route("c.example.com", first)])
    ids = await route_ids(host)
    assert sorted(ids) == sorted(
        [route_id(name) for name in ("a.example.com", "b.example.com", "c.example.com")]
        + [FALLBACK_ID]
    )
    assert ids[-1] == FALLBACK_ID
    assert sorted(await router.routes(host), key=lambda route: route.hostname) == [
        Route("a.example.com", second),
        Route("b.example.com", second),
        Route("c.example.com", first),
    ]


async def test_one_route_is_one_request_and_a_batch_of_fifty_is_one_change(
    router: CaddyRouter,
    host: Host,
    settings: Settings,
    start_upstream: StartUpstream,
    admin_requests: AdminRequests,
) -> None:
    upstream = await start_upstream("web")
    batch = [Route(f"app-{number}.example.com", upstream) for number in range(50)]
    admin_requests.clear()
    await router.set_routes(host, batch)
    assert admin_requests == [("GET", ROUTES_PATH), ("PATCH", ROUTES_PATH)]

    admin_requests.clear()
    await router.set_routes(host, batch)  # nothing changes: nothing is written
    assert admin_requests.writes == []

    other = await start_upstream("other")
    admin_requests.clear()
    await router.set_routes(host, [Route("app-7.example.com", other)])
    assert admin_requests == [("PATCH", f"/id/{route_id('app-7.example.com')}/handle/0/upstreams")]

    admin_requests.clear()
    await router.set_routes(host, [Route("new.example.com", other)])
    assert admin_requests.writes == [
        ("PATCH", f"/id/{route_id('new.example.com')}/handle/0/upstreams"),  # 404: not there
        ("PATCH", ROUTES_PATH),  # the one change, built from a GET: no duplicate @id
    ]

    statuses = await asyncio.gather(*(fetch(settings, route.hostname) for route in batch))
    assert [text.split()[0] for _, text in statuses].count("web") == 49
    assert statuses[7] == (200, "other app-7.example.com")
    assert len(await router.routes(host)) == 51


async def test_remove_routes_is_idempotent(
    router: CaddyRouter, host: Host, settings: Settings, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("web")
    names = ["one.example.com", "two.example.com", "three.example.com"]
    await router.set_routes(host, [Route(name, upstream) for name in names])
    await router.remove_routes(host, ["one.example.com"])
    await router.remove_routes(host, ["one.example.com"])  # Caddy: 404 unknown object ID
    await answers(settings, "one.example.com", (404, FALLBACK_BODY))
    await answers(settings, "two.example.com", (200, "web two.example.com"))
    await router.remove_routes(host, ["two.example.com", "three.example.com", "never.example.com"])
    await router.remove_routes(host, ["two.example.com", "three.example.com"])
    await router.remove_routes(host, [])
    assert await router.routes(host) == []
    assert await route_ids(host) == [FALLBACK_ID]


async def test_routes_reads_what_caddy_holds_and_only_digis(
    router: CaddyRouter, host: Host, start_upstream: StartUpstream
) -> None:
    upstream = await start_upstream("web")
    await router.set_routes(host, [Route("mine.example.com", upstream)])
    await admin(host, "PUT", ROUTES_PATH + "/0", hand_made_route("by-hand.example.com", upstream))
    await admin(host, "PATCH", f"/id/{route_id('mine.example.com')}/handle/0/upstreams", [
        {"dial": "127.0.0.1:9"}
    ])  # fmt: skip
    assert await router.routes(host) == [Route("mine.example.com", "127.0.0.1:9")]


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
    assert admin_requests == [("PATCH", ROUTES_PATH)]
    assert await route_ids(host) == [
        route_id("kept.example.com"),
        route_id("lost.example.com"),
        FALLBACK_ID,
    ]
    await answers(settings, "by-hand.example.com", (404, FALLBACK_BODY))
    await answers(settings, "lost.example.com", (200, "web lost.example.com"))
    await router.sync(host, [])
    assert await route_ids(host) == [FALLBACK_ID]


HOSTILE_HOSTNAMES = [
    "a b",
    "x;rm",
    "..",
    "",
    "App.Example.com",
    "a" * 64 + ".example.com",
    "*",
    "*.example.com",
    "example.com.",
    "-bad.example.com",
    "bad-.example.com",
    "a_b.example.com",
    "a/../../config",
    "ok.example.com\n",
    "ünï.example.com",
    ("a" * 63 + ".") * 4 + "com",  # 260 characters
]


@pytest.mark.parametrize("hostname", HOSTILE_HOSTNAMES)
async def test_hostile_hostnames_are_refused_before_reaching_caddy(
    router: CaddyRouter, host: Host, admin_requests: AdminRequests, hostname: str
) -> None:
    admin_requests.clear()
    good = Route("good.example.com", "127.0.0.1:9")
    for call in (
        router.set_routes(host, [Route(hostname, "127.0.0.1:9")]),
        router.set_routes(host, [good, Route(hostname, "127.0.0.1:9")]),
        router.sync(host, [good, Route(hostname, "127.0.0.1:9")]),
        router.remove_routes(host, [hostname]),
    ):
        with pytest.raises(BadUserInput, match="cannot be routed"):
            await call
    assert admin_requests == []


@pytest.mark.parametrize(
    "upstream",
    ["unix//var/run/docker.sock", "{http.request.host}:80", "127.0.0.1", "127.0.0.1:0",
     "127.0.0.1:65536", "127.0.0.1:80 ", "a b:80", ":80", "[::1:80", "http://127.0.0.1:80"],
)  # fmt: skip
async def test_upstreams_other_than_an_address_are_refused(
    router: CaddyRouter, host: Host, admin_requests: AdminRequests, upstream: str
) -> None:
    admin_requests.clear()
    with pytest.raises(BadUserInput, match="not an address Caddy may proxy to"):
        await router.set_routes(host, [Route("good.example.com", upstream)])
    assert admin_requests == []


async def test_a_label_of_63_characters_and_ipv6_upstreams_are_fine(
    router: CaddyRouter, host: Host
) -> None:
    longest = "a" * 63 + ".example.com"
    await router.set_routes(host, [Route(longest, "[::1]:9"), Route("web-1.x", "web-1:8000")])
    assert sorted(await router.routes(host), key=lambda route: route.hostname) == [
        Route(longest, "[::1]:9"),
        Route("web-1.x", "web-1:8000"),
    ]


async def test_a_caddy_without_digis_server_gets_one(
    bare_caddy: str, clean_env: Path, start_upstream: StartUpstream
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


async def test_an_unreachable_admin_api_says_what_to_do(clean_env: Path) -> None:
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
    bare_caddy: str, clean_env: Path, start_upstream: StartUpstream
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

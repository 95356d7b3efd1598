"""The Router contract: what every router plugin must guarantee, as a test suite.

A router's test module subclasses :class:`RouterContract` under a ``Test…`` name and defines
the ``routed`` fixture: a started router, a host it routes on, a way to send a request for a
hostname through that host's proxy, and a way to start stand-in containers::

    from tests.contracts.router import RoutedHost, RouterContract

    class TestMyRouter(RouterContract):
        @pytest.fixture
        async def routed(self, ...) -> AsyncIterator[RoutedHost]:
            ...

Upstreams are ``ip:port`` of small HTTP servers that answer ``<name> <Host header>``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from digi_core.errors import BadUserInput
from digi_core.providers import Host, Route, Router, Unavailable


@dataclass
class RoutedHost:
    router: Router
    host: Host
    url: str
    """Where requests for a routed hostname go (the host's proxy, or the public entry)."""
    start_upstream: Callable[..., Awaitable[str]]
    """``start_upstream(name, beside=None)``: a server answering ``<name> <Host header>``;
    ``beside`` another one: on its port at another address, as a redeployed container."""

    async def fetch(self, hostname: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(self.url, headers={"Host": hostname}) as response,
        ):
            return response.status, await response.text()

    async def answers(self, hostname: str, status: int, text: str | None = None) -> None:
        """``hostname`` answers ``status`` (and ``text`` in its body) within the router's
        settle time and a second."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.router.settle_seconds + 1
        seen = await self.fetch(hostname)
        while not (seen[0] == status and (text is None or text in seen[1])):
            if loop.time() > deadline:
                raise AssertionError(f"{hostname} answers {seen}, not {status} {text}")
            await asyncio.sleep(0.02)
            seen = await self.fetch(hostname)

    async def routes(self) -> list[Route]:
        return sorted(await self.router.routes(self.host), key=lambda route: route.hostname)


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
    "{http.request.host}",
    ("a" * 63 + ".") * 4 + "com",  # 260 characters
]

HOSTILE_UPSTREAMS = [
    "unix//var/run/docker.sock",
    "{http.request.host}:80",
    "127.0.0.1",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:80 ",
    "a b:80",
    ":80",
    "[::1:80",
    "http://127.0.0.1:80",
]


class RouterContract:
    """The checks of the Router docstrings (digi_core/providers.py). Subclass it."""

    @pytest.fixture
    async def routed(self) -> RoutedHost:
        pytest.fail(f"{type(self).__name__} must define the `routed` fixture")

    async def test_a_routed_hostname_reaches_its_upstream_with_its_host_header(
        self, routed: RoutedHost
    ) -> None:
        upstream = await routed.start_upstream("blue")
        await routed.router.set_routes(routed.host, [Route("app-x1.example.com", upstream)])
        await routed.answers("app-x1.example.com", 200, "blue app-x1.example.com")
        assert await routed.routes() == [Route("app-x1.example.com", upstream)]

    async def test_an_unknown_hostname_is_not_served(self, routed: RoutedHost) -> None:
        status, _ = await routed.fetch("nothing-here.example.com")
        assert status >= 400

    async def test_replacing_an_upstream_under_load_fails_no_request(
        self, routed: RoutedHost
    ) -> None:
        blue = await routed.start_upstream("blue")
        green = await routed.start_upstream("green", blue)
        hostname = "busy.example.com"
        await routed.router.set_routes(routed.host, [Route(hostname, blue)])
        await routed.answers(hostname, 200, "blue")
        seen: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def client() -> None:
            # Keep-alive connections, like a browser.
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    try:
                        async with session.get(routed.url, headers={"Host": hostname}) as answer:
                            text = await answer.text()
                            if answer.status != 200:
                                failures.append(f"{answer.status} {text}")
                            seen.append(text.split()[0])
                    except aiohttp.ClientError as error:
                        failures.append(repr(error))

        clients = [asyncio.create_task(client()) for _ in range(2)]
        # The old upstream keeps serving for the settle time, as the pipeline's drain does.
        pause = routed.router.settle_seconds + 0.1
        for upstream in (green, blue, green, blue, green):
            await asyncio.sleep(pause)
            await routed.router.set_routes(routed.host, [Route(hostname, upstream)])
        await asyncio.sleep(pause)
        stop.set()
        await asyncio.gather(*clients)
        assert failures == []
        assert len(seen) > 200
        switches = sum(1 for before, after in itertools.pairwise(seen) if before != after)
        assert switches >= 5 and seen[-1] == "green"

    async def test_set_routes_is_idempotent_and_replaces(self, routed: RoutedHost) -> None:
        first = await routed.start_upstream("first")
        second = await routed.start_upstream("second", first)
        router, host = routed.router, routed.host
        routes = [Route("a.example.com", first), Route("b.example.com", first)]
        await router.set_routes(host, routes)
        await router.set_routes(host, routes)
        await router.set_routes(host, [Route("a.example.com", second)])
        await router.set_routes(
            host, [Route("b.example.com", second), Route("c.example.com", first)]
        )
        assert await routed.routes() == [
            Route("a.example.com", second),
            Route("b.example.com", second),
            Route("c.example.com", first),
        ]
        await routed.answers("a.example.com", 200, "second a.example.com")
        await routed.answers("c.example.com", 200, "first c.example.com")

    async def test_remove_routes_is_idempotent(self, routed: RoutedHost) -> None:
        upstream = await routed.start_upstream("web")
        router, host = routed.router, routed.host
        names = ["one.example.com", "two.example.com", "three.example.com"]
        await router.set_routes(host, [Route(name, upstream) for name in names])
        await router.remove_routes(host, ["one.example.com"])
        await router.remove_routes(host, ["one.example.com"])
        status, _ = await routed.fetch("one.example.com")
        assert status >= 400
        await routed.answers("two.example.com", 200, "web two.example.com")
        await router.remove_routes(host, ["two.example.com", "three.example.com", "x.example.com"])
        await router.remove_routes(host, ["two.example.com", "three.example.com"])
        await router.remove_routes(host, [])
        assert await routed.routes() == []

    async def test_sync_makes_the_host_hold_exactly_the_given_routes(
        self, routed: RoutedHost
    ) -> None:
        upstream = await routed.start_upstream("web")
        router, host = routed.router, routed.host
        wanted = [Route("kept.example.com", upstream), Route("lost.example.com", upstream)]
        await router.sync(host, wanted)
        await router.set_routes(host, [Route("stray.example.com", upstream)])
        await router.remove_routes(host, ["lost.example.com"])
        await router.sync(host, wanted)
        assert await routed.routes() == wanted
        await routed.answers("lost.example.com", 200, "web lost.example.com")
        status, _ = await routed.fetch("stray.example.com")
        assert status >= 400
        await router.sync(host, [])
        assert await routed.routes() == []

    @pytest.mark.parametrize("reason", list(Unavailable))
    async def test_a_hostname_without_upstream_answers_a_503_page(
        self, routed: RoutedHost, reason: Unavailable
    ) -> None:
        upstream = await routed.start_upstream("web")
        router, host = routed.router, routed.host
        await router.set_routes(host, [Route("paused.example.com", upstream)])
        await router.set_routes(host, [Route("paused.example.com", None, reason)])
        words = {"not-deployed": "not been deployed", "suspended": "suspended"}
        await routed.answers("paused.example.com", 503, words.get(reason.value, reason.value))
        assert await routed.routes() == [Route("paused.example.com", None, reason)]
        await router.set_routes(host, [Route("paused.example.com", upstream)])
        await routed.answers("paused.example.com", 200, "web paused.example.com")

    @pytest.mark.parametrize("hostname", HOSTILE_HOSTNAMES)
    async def test_hostile_hostnames_are_refused_and_change_nothing(
        self, routed: RoutedHost, hostname: str
    ) -> None:
        router, host = routed.router, routed.host
        good = Route("good.example.com", "127.0.0.1:9")
        await router.set_routes(host, [good])
        for call in (
            router.set_routes(host, [Route(hostname, "127.0.0.1:9")]),
            router.set_routes(
                host, [Route("new.example.com", "127.0.0.1:9"), Route(hostname, "127.0.0.1:9")]
            ),
            router.sync(host, [Route(hostname, "127.0.0.1:9")]),
            router.remove_routes(host, [hostname]),
        ):
            with pytest.raises(BadUserInput):
                await call
        assert await routed.routes() == [good]

    @pytest.mark.parametrize("upstream", HOSTILE_UPSTREAMS)
    async def test_upstreams_other_than_an_address_are_refused(
        self, routed: RoutedHost, upstream: str
    ) -> None:
        with pytest.raises(BadUserInput):
            await routed.router.set_routes(routed.host, [Route("good.example.com", upstream)])
        assert await routed.routes() == []

    async def test_a_label_of_63_characters_and_ipv6_upstreams_are_fine(
        self, routed: RoutedHost
    ) -> None:
        longest = "a" * 63 + ".example.com"
        await routed.router.set_routes(routed.host, [Route(longest, "[::1]:9")])
        assert await routed.routes() == [Route(longest, "[::1]:9")]

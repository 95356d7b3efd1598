"""Fixtures for the Caddy router: the real caddy binary and small HTTP upstreams, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from digi_caddy.router import CaddyRouter
from digi_core import db
from digi_core.config import Settings, load_settings
from digi_core.internal_dns import ZoneServer
from digi_core.providers import Host
from tests.conftest import TEST_SECRET, upgrade

StartUpstream = Callable[..., Awaitable[str]]


def free_port() -> int:
    """A loopback port nothing listens on now (never Caddy's 2019 or Digi's 8080)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def caddy_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a Caddy of its own: free admin and HTTP ports, its own data directory."""
    values: dict[str, Any] = {
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": data_dir,
        "DATABASE_URL": f"sqlite://{data_dir / 'digi.sqlite3'}",
        # Caddy looks a moved upstream up again this often (the router's settle time).
        "DIGI_ROUTE_REFRESH": 0.2,
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
        "DIGI_HTTP_PORT": free_port(),
    }
    values.update(overrides)
    return load_settings(**values)


def host_of(settings: Settings) -> Host:
    return Host(
        id="test",
        docker=None,  # type: ignore[arg-type]  # the router never touches Docker
        caddy_admin_url=settings.caddy_admin_url,
        upstream=f"127.0.0.1:{settings.http_port}",
    )


class AdminRequests(list[tuple[str, str]]):
    """Every request the router's session sent, as (method, path); ``urls`` in full."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[URL] = []

    def clear(self) -> None:
        super().clear()
        self.urls.clear()

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [request for request in self if request[0] != "GET"]

    def trace_config(self) -> aiohttp.TraceConfig:
        async def on_request_start(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            self.append((params.method, params.url.path))
            self.urls.append(params.url)

        config = aiohttp.TraceConfig()
        config.on_request_start.append(on_request_start)
        return config


@pytest.fixture
def settings(tmp_path: Path, clean_env: Path) -> Settings:
    """Settings for a Caddy that Digi starts and supervises (DIGI_CADDY_MANAGE on)."""
    return caddy_settings(tmp_path / "data")


@pytest.fixture
def admin_requests() -> AdminRequests:
    return AdminRequests()


@pytest.fixture
async def zone(settings: Settings) -> AsyncIterator[ZoneServer]:
    """The database and Digi's internal DNS zone, answering as `digi server` does."""
    await upgrade(settings)
    await db.open_database(settings)
    server = ZoneServer()
    await server.start(settings.internal_dns)
    yield server
    await server.close()
    await db.close_database()


@pytest.fixture
async def router(
    settings: Settings, admin_requests: AdminRequests, zone: ZoneServer
) -> AsyncIterator[CaddyRouter]:
    """A started router with its own Caddy; closing it stops that Caddy."""
    router = CaddyRouter(trace_configs=[admin_requests.trace_config()])
    await router.start(settings)
    yield router
    await router.close()


@pytest.fixture
def host(settings: Settings) -> Host:
    return host_of(settings)


@pytest.fixture
async def bare_caddy(tmp_path: Path) -> AsyncIterator[str]:
    """A Caddy that Digi did not start, with no apps at all: its admin URL."""
    port = free_port()
    config = tmp_path / "bare.json"
    config.write_text(f'{{"admin": {{"listen": "127.0.0.1:{port}"}}}}')
    process = await asyncio.create_subprocess_exec(
        "caddy",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            "XDG_DATA_HOME": str(tmp_path / "bare"),
            "XDG_CONFIG_HOME": str(tmp_path / "bare"),
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_for_admin(url)
        yield url
    finally:
        process.kill()
        await process.wait()


async def wait_for_admin(url: str, timeout_seconds: float = 10) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_seconds / 0.05)):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/config/"):
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"no Caddy admin API at {url}")


@pytest.fixture
async def start_upstream() -> AsyncIterator[StartUpstream]:
    """Starts loopback HTTP servers standing in for containers: each answers
    ``<name> <Host header>``; returns its ``ip:port``. With ``beside`` (an upstream), on the
    same port at another loopback address, as a redeployed container is."""
    runners: list[web.AppRunner] = []
    addresses = (f"127.0.0.{last}" for last in itertools.count(2))

    async def start(name: str, beside: str | None = None) -> str:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(text=f"{name} {request.host}")

        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        if beside is None:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        else:
            await web.TCPSite(runner, next(addresses), int(beside.rpartition(":")[2])).start()
        address, port = runner.addresses[0][:2]
        return f"{address}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def fetch(settings: Settings, hostname: str) -> tuple[int, str]:
    """One request through the Caddy on ``settings.http_port`` for ``hostname``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{settings.http_port}/", headers={"Host": hostname}
        ) as response,
    ):
        return response.status, await response.text()


async def answers(settings: Settings, hostname: str, expected: tuple[int, str]) -> None:
    """``hostname`` answers ``expected`` through Caddy, within a second.

    Not on the very first request: Caddy 2.6.2 can still serve a connection it accepted
    during a reload with the previous config, even after its admin API confirmed the change.
    """
    answer = await fetch(settings, hostname)
    for _ in range(50):
        if answer == expected:
            return
        await asyncio.sleep(0.02)
        answer = await fetch(settings, hostname)
    assert answer == expected

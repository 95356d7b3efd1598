"""Routing benchmark: how fast a new hostname answers through the master tier as the number of
hostnames grows, Digi's cost on a host's Caddy beside Caddy's own, and throughput through the
tiers. Run from the repository root: ``.venv/bin/python bench/routes.py``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from digi_caddy.router import ROUTED_ZONE, ROUTES_PATH, CaddyRouter  # noqa: E402
from digi_core import db, internal_dns  # noqa: E402
from digi_core.config import Settings, load_settings  # noqa: E402
from digi_core.internal_dns import ZoneServer  # noqa: E402
from digi_core.providers import Host, Route  # noqa: E402

console = Console()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def bare_caddy(directory: Path) -> AsyncIterator[str]:
    """A Caddy with nothing but its admin API: the master."""
    port = free_port()
    (directory / "master.json").write_text(f'{{"admin": {{"listen": "127.0.0.1:{port}"}}}}')
    env = {**os.environ, "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}
    process = await asyncio.create_subprocess_exec(
        "caddy", "run", "--config", str(directory / "master.json"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    """A stand-in container answering "ok"."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", lambda _: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield "{}:{}".format(*runner.addresses[0][:2])
    finally:
        await runner.cleanup()


async def first_answer(session: aiohttp.ClientSession, port: int, hostname: str) -> None:
    while True:
        try:
            async with session.get(
                f"http://127.0.0.1:{port}/", headers={"Host": hostname}
            ) as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.001)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def master_tier(
    router: CaddyRouter, host: Host, settings: Settings, target: str, runs: int
) -> dict[int, float]:
    """Median time from set_routes to the first answer through the master, at each size."""
    medians: dict[int, float] = {}
    filled = 0
    async with aiohttp.ClientSession() as session:
        for size in (1, 1_000, 10_000):
            others = {
                f"other-{n}.bench.test.{ROUTED_ZONE}": ["127.0.0.1"] for n in range(filled, size)
            }
            await internal_dns.set_records("elsewhere", others)  # hosts' hostnames
            filled = size
            times = []
            for run in range(runs):
                name = f"new-{size}-{run}.bench.test"
                started = time.perf_counter()
                await router.set_routes(host, [Route(name, target)])
                await first_answer(session, settings.master_http_port, name)
                times.append(time.perf_counter() - started)
                await router.remove_routes(host, [name])
            medians[size] = statistics.median(times)
    return medians


async def host_tier(
    router: CaddyRouter, host: Host, target: str, runs: int
) -> dict[int, tuple[float, float]]:
    """Median of Digi's set_routes for a new hostname, and of Caddy's own cost for the same
    admin request (the PUT of that route that Digi sends, by hand), at each size."""
    results: dict[int, tuple[float, float]] = {}
    async with aiohttp.ClientSession() as session:
        for size in (1, 100, 1_000):
            await router.sync(host, [Route(f"h{n}.bench.test", target) for n in range(size)])
            digi, caddy = [], []
            for run in range(runs):
                name = f"add-{size}-{run}.bench.test"
                started = time.perf_counter()
                await router.set_routes(host, [Route(name, target)])
                digi.append(time.perf_counter() - started)
                route = router.layout.route(Route(name, target))
                await router.remove_routes(host, [name])
                started = time.perf_counter()
                async with session.put(
                    host.caddy_admin_url + ROUTES_PATH + "/0", json=route
                ) as answer:
                    assert answer.status == 200, await answer.text()
                caddy.append(time.perf_counter() - started)
                await router.remove_routes(host, [name])
            results[size] = (statistics.median(digi), statistics.median(caddy))
        await router.sync(host, [])
    return results


async def load(port: int, hostname: str, seconds: float, connections: int) -> tuple[float, float]:
    """Requests per second and p99 latency (s) of ``connections`` keep-alive clients."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with session.get(
                f"http://127.0.0.1:{port}/", headers={"Host": hostname}
            ) as answer:
                await answer.read()
                assert answer.status == 200
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    return len(latencies) / seconds, statistics.quantiles(latencies, n=100)[98]


async def throughput(
    router: CaddyRouter, host: Host, settings: Settings, target: str, seconds: float
) -> dict[str, tuple[float, float]]:
    await router.set_routes(host, [Route("load.bench.test", target)])
    master = str(settings.master_caddy_url)
    static = {
        "@id": "bench-static",
        "match": [{"host": ["static.bench.test"]}],
        "handle": [
            {
                "handler": "reverse_proxy",
                "headers": {"request": {"set": {"Host": ["load.bench.test"]}}},
                "upstreams": [{"dial": f"127.0.0.1:{settings.http_port}"}],
            }
        ],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{master}/config/apps/http/servers/digi-public-http/routes/0", json=static),
    ):
        pass
    target_port = int(target.rpartition(":")[2])
    cases: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
        "straight to the container": lambda: load(target_port, "x", seconds, 32),
        "host Caddy only": lambda: load(settings.http_port, "load.bench.test", seconds, 32),
        "master (dynamic) + host": lambda: load(
            settings.master_http_port, "load.bench.test", seconds, 32
        ),
        "master (static) + host": lambda: load(
            settings.master_http_port, "static.bench.test", seconds, 32
        ),
    }
    return {name: await case() for name, case in cases.items()}


async def main(runs: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="digi-bench-routes-") as directory:
        root = Path(directory)
        async with bare_caddy(root) as master, upstream() as target:
            settings = load_settings(
                DIGI_SECRET="bench-" + "x" * 40,
                DIGI_DATA_DIR=root / "data",
                DATABASE_URL=f"sqlite://{root / 'digi.sqlite3'}",
                DIGI_CADDY_ADMIN_URL=f"http://127.0.0.1:{free_port()}",
                DIGI_HTTP_PORT=free_port(),
                DIGI_INTERNAL_DNS=f"127.0.0.1:{free_port()}",
                MASTER_CADDY_URL=master,
                DIGI_MASTER_HTTP_PORT=free_port(),
            )
            await db.upgrade(settings)
            await db.open_database(settings)
            zone = ZoneServer()
            await zone.start(settings.internal_dns)
            router = CaddyRouter()
            await router.start(settings)
            host = Host("local", None, settings.caddy_admin_url, f"127.0.0.1:{settings.http_port}")  # type: ignore[arg-type]
            try:
                tiers = await master_tier(router, host, settings, target, runs)
                hosts = await host_tier(router, host, target, runs)
                rates = await throughput(router, host, settings, target, seconds)
            finally:
                await router.close()
                await zone.close()
                await db.close_database()
    report(tiers, hosts, rates, runs)


def report(
    tiers: dict[int, float],
    hosts: dict[int, tuple[float, float]],
    rates: dict[str, tuple[float, float]],
    runs: int,
) -> None:
    table = Table(title=f"New hostname -> first answer through the master (median of {runs})")
    for column in ("hostnames served", "ms", "vs 1"):
        table.add_column(column, justify="right")
    for size, seconds in tiers.items():
        table.add_row(f"{size:,}", ms(seconds), f"{seconds / tiers[1]:.2f}x")
    console.print(table)
    table = Table(title=f"New route on a host's Caddy (median of {runs})")
    for column in ("routes", "Digi ms", "Caddy's own ms", "Digi's overhead"):
        table.add_column(column, justify="right")
    for size, (digi, caddy) in hosts.items():
        table.add_row(f"{size:,}", ms(digi), ms(caddy), f"{(digi - caddy) / caddy:+.0%}")
    console.print(table)
    table = Table(title="Throughput, 32 keep-alive connections")
    for column in ("path", "req/s", "p99 ms", "req/s vs straight"):
        table.add_column(column, justify="right" if column != "path" else "left")
    base = rates["straight to the container"][0]
    for name, (rate, p99) in rates.items():
        table.add_row(name, f"{rate:,.0f}", ms(p99), f"{rate / base:.2f}")
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.seconds))

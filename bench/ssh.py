"""Benchmark: what reaching a host over SSH costs, against the same calls made locally.

A real sshd on loopback plays the host; Digi's SshPool forwards this machine's Docker socket
and a small HTTP server (standing where the host's Caddy admin API would be). Each call is
timed alternately through the tunnel and directly, so both see the same noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiodocker
import aiohttp
from aiohttp import web
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from digi_core.ssh import SshPool, SshTarget, platform_key, public_key_line  # noqa: E402
from tests.sshd import Sshd  # noqa: E402


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def main(runs: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="digi-bench-ssh-"))
    sshd = Sshd(directory / "sshd")
    key = platform_key(directory / "key")
    sshd.authorize(public_key_line(key))
    await sshd.start()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/config/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    admin_port = runner.addresses[0][1]

    pool = SshPool(key)
    local = aiodocker.Docker()
    session = aiohttp.ClientSession()
    try:
        target = SshTarget("127.0.0.1", sshd.port, sshd.user, caddy_admin=("127.0.0.1", admin_port))

        async def pin(line: str) -> None:
            return None

        started = time.perf_counter()
        host = await pool.host("bench", target, "127.0.0.1:8080", pin)
        await host.docker.version()
        connect_ms = (time.perf_counter() - started) * 1000

        async def get(url: str) -> None:
            async with session.get(url) as response:
                await response.read()

        calls = {
            "Docker: version": (host.docker.version, local.version),
            "Docker: list containers": (
                lambda: host.docker.containers.list(all=True),
                lambda: local.containers.list(all=True),
            ),
            "Caddy admin: GET /config/": (
                lambda: get(f"{host.caddy_admin_url}/config/"),
                lambda: get(f"http://127.0.0.1:{admin_port}/config/"),
            ),
        }
        table = Table("call", "direct (median ms)", "over SSH (median ms)", "ratio")
        for name, (tunnelled, direct) in calls.items():
            over, plain = [], []
            for _ in range(runs):
                over.append(await timed(tunnelled))
                plain.append(await timed(direct))
            a, b = statistics.median(plain), statistics.median(over)
            table.add_row(name, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x")
        console = Console()
        console.print(table)
        console.print(f"first connection (SSH handshake, key check, forwards): {connect_ms:.0f} ms")
    finally:
        await session.close()
        await local.close()
        await pool.close()
        await runner.cleanup()
        await sshd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    asyncio.run(main(parser.parse_args().runs))

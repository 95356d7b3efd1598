"""The console against one real platform (API, worker, Docker, Caddy on SQLite) shared by the
console tests, seeded with fixed users, services and deployments; tests that change the world
put it back, so the snapshots see the same screens whatever ran before them."""

from __future__ import annotations

import asyncio
import html
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot

from digi_core.config import Settings
from digi_core.models import Component, Deployment, DeploymentStatus, Role, ServiceStatus
from digi_core.models import Service as ServiceRow
from digi_tui.app import DigiConsole
from digi_tui.options import ConsoleOptions
from tests.conftest import free_udp_port
from tests.core.deploys.conftest import Platform, running_platform

# Component URLs carry Caddy's HTTP port: a fixed one keeps them the same in every snapshot.
SNAPSHOT_HTTP_PORT = 47080
FAST = ConsoleOptions(poll_seconds=0.5, health_seconds=0.3, retry_seconds=0.3, log_tail=50)
USERS = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
# service name, owner, deployment status, message
SERVICES = [
    ("shop", "alice@example.com", DeploymentStatus.RUNNING, "running"),
    ("blog", "bob@example.com", DeploymentStatus.FAILED, "health check failed"),
    ("wiki", "bob@example.com", DeploymentStatus.BUILDING, "building the image"),
]
SERVICE_STATUS = {
    DeploymentStatus.RUNNING: ServiceStatus.RUNNING,
    DeploymentStatus.FAILED: ServiceStatus.FAILED,
    DeploymentStatus.BUILDING: ServiceStatus.DEPLOYING,
}


@dataclass
class World:
    """The seeded platform: tokens by email, service ids and deployments by service name."""

    platform: Platform
    api_url: str
    admin_token: str
    tokens: dict[str, str]
    user_ids: dict[str, str]
    service_ids: dict[str, str]
    deployments: dict[str, Deployment]

    def console(self, token: str | None = None, api_url: str | None = None) -> DigiConsole:
        return DigiConsole(
            api_url or self.api_url, token or self.admin_token, "from the test", options=FAST
        )


@pytest.fixture(scope="package")
async def world(
    tmp_path_factory: pytest.TempPathFactory, docker_images: dict[str, str]
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("tui-platform")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name in Settings.model_fields or name.startswith(("DIGI_", "PROXMOX_", "STRIPE_")):
                patch.delenv(name)
        for name in ("DATABASE_URL", "REDIS_URL", "PLATFORM_DOMAIN"):
            patch.delenv(name, raising=False)
        patch.setenv("DIGI_INTERNAL_DNS", f"127.0.0.1:{free_udp_port()}")
        patch.chdir(root)
        async with running_platform("sqlite", root, DIGI_HTTP_PORT=SNAPSHOT_HTTP_PORT) as platform:
            yield await seed(platform, docker_images["web"])


async def seed(platform: Platform, image: str) -> World:
    _, admin_token = await platform.user("admin@digi.test", role=Role.ADMIN)
    tokens, user_ids = {}, {}
    for email in USERS:
        user, tokens[email] = await platform.user(email)
        user_ids[email] = str(user.id)
    service_ids, deployments = {}, {}
    for index, (name, owner, status, message) in enumerate(SERVICES, start=1):
        created = await platform.service(
            tokens[owner], name, f'[{{name: "web", type: DOCKER, image: "{image}"}}]'
        )
        service_ids[name] = created["id"]
        # Slugs are random; fixed subdomains keep the URLs the same in every snapshot.
        await Component.filter(id=int(created["components"][0]["id"])).update(
            subdomain=f"{name}-web"
        )
        await ServiceRow.filter(id=int(created["id"])).update(status=SERVICE_STATUS[status])
        deployments[name] = await Deployment.create(
            service_id=int(created["id"]),
            component_id=int(created["components"][0]["id"]),
            job_id=f"job-seeded-{index}",
            status=status,
            message=message,
            error="GET /health answered 502" if status is DeploymentStatus.FAILED else None,
            image=image,
        )
    return World(
        platform=platform,
        api_url=str(platform.client.make_url("")).rstrip("/"),
        admin_token=admin_token,
        tokens=tokens,
        user_ids=user_ids,
        service_ids=service_ids,
        deployments=deployments,
    )


async def until(
    pilot: Pilot[None], check: Callable[[], bool | Awaitable[bool]], within: float = 20
) -> None:
    """Let the app run until ``check()`` holds (no key pressed meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {within} s: {check}")
        await pilot.pause(0.05)


def shown(pilot: Pilot[None]) -> str:
    """What the terminal shows now, as plain text."""
    svg = pilot.app.export_screenshot()
    return re.sub(r"(&#160;|\s)+", " ", html.unescape(re.sub(r"<[^>]+>", "", svg)))


class ClosableProxy:
    """A TCP forwarder to the API on a fixed port that a test can close (as if the API went
    away) and open again: the console's connection drops and comes back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._forward, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    target.write(data)
                    await target.drain()
            except OSError:
                pass
            finally:
                target.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[ClosableProxy]:
    port = world.platform.client.port
    assert port is not None
    forwarder = ClosableProxy(port)
    await forwarder.open()
    yield forwarder
    await forwarder.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No saved login from the machine's user: the console's own config directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DIGI_TOKEN", raising=False)
    return tmp_path

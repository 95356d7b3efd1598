"""The whole platform for deploy tests: the API with its worker, this machine's Docker engine
and a Caddy the app starts itself, on the embedded default (SQLite, in-process queue) and on
PostgreSQL + Redis (saq); test images built offline."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from digi_core import db, runtime
from digi_core.config import load_settings
from digi_core.models import Deployment, DeploymentStatus
from digi_core.server.app import init_app
from digi_core.server.keys import WORKER
from tests.conftest import REDIS_URL, TEST_SECRET, _tar
from tests.core.api.conftest import Api

V2_IMAGE = "digi-test-web:v2"
V2_START = b"""\
echo "v2 from ${COMPONENT:-web}" > /www/index.html
echo serving v2
exec httpd -f -v -p 8000 -h /www
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
async def test_images(docker_images: dict[str, str]) -> dict[str, str]:
    """The web image and a second version of it that answers "v2 from …"."""
    docker = aiodocker.Docker()
    try:
        dockerfile = b"FROM digi-test-web:latest\nCOPY start.sh /start.sh\n"
        context = _tar({"Dockerfile": dockerfile, "start.sh": V2_START})
        await docker.images.build(
            fileobj=io.BytesIO(context), encoding="application/x-tar", tag=V2_IMAGE
        )
    finally:
        await docker.close()
    return {**docker_images, "v2": V2_IMAGE}


@dataclass
class Platform(Api):
    http_port: int = 0

    @property
    def worker(self) -> Any:
        return self.client.app[WORKER]  # type: ignore[union-attr]

    async def service(self, token: str, name: str, components: str) -> dict[str, Any]:
        """Create a service; ``components`` is the GraphQL list literal."""
        query = (
            f'mutation {{ createService(name: "{name}", components: {components}) '
            "{ id slug components { id name url } } }"
        )
        return (await self.gql(query, token=token))["createService"]  # type: ignore[no-any-return]

    async def deploy(self, token: str, service_id: str, **arguments: Any) -> dict[str, Any]:
        variables = {"id": service_id, **arguments}
        data = await self.gql(
            "mutation($id: ID!, $only: [String!], $rollbackTo: ID) { deployService("
            "serviceId: $id, only: $only, rollbackTo: $rollbackTo) { jobId deployments "
            "{ id component status } } }",
            variables,
            token=token,
        )
        return data["deployService"]  # type: ignore[no-any-return]

    async def wait_job(
        self, job_id: str, within: float = 60, until: set[DeploymentStatus] | None = None
    ) -> list[Deployment]:
        """The job's rows once all are final (or in ``until``)."""
        wanted = until or {status for status in DeploymentStatus if status.final}
        deadline = time.monotonic() + within
        while True:
            rows = await Deployment.filter(job_id=job_id).order_by("id")
            if rows and all(row.status in wanted for row in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still at {[r.status for r in rows]}")
            await asyncio.sleep(0.1)

    async def expect(
        self, hostname: str, status: int, body: str | None = None, within: float = 5
    ) -> None:
        """``hostname`` answers ``status`` (and ``body``) through Caddy within a few seconds:
        Caddy may serve a request or two with its previous config after a change."""
        deadline = time.monotonic() + within
        while True:
            seen = await self.get(hostname)
            if seen[0] == status and (body is None or seen[1].strip() == body):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{hostname} answers {seen}, not {status} {body}")
            await asyncio.sleep(0.05)

    async def get(self, hostname: str, path: str = "/") -> tuple[int, str]:
        """A request through the Caddy the app runs, by Host header."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(
                f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": hostname}
            ) as response,
        ):
            return response.status, await response.text()


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def platform(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clean_env: Path,
    test_images: dict[str, str],
    postgres_url: str,
) -> AsyncIterator[Platform]:
    overrides: dict[str, Any] = {
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": tmp_path / "data",
        "DIGI_LOAD_PLUGINS": "local,caddy,railpack",
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
        "DIGI_HTTP_PORT": free_port(),
        "DIGI_HEALTHCHECK_TIMEOUT": 15,
        "DIGI_DRAIN_SECONDS": 0.3,
        "DIGI_STOP_TIMEOUT": 2,
        # Tests run the reconciler's passes themselves.
        "DIGI_RECONCILE_INTERVAL": 3600,
    }
    if request.param == "postgres+redis":
        overrides["DATABASE_URL"] = postgres_url
        overrides["REDIS_URL"] = REDIS_URL
        overrides["DIGI_REDIS_PREFIX"] = f"digitest{uuid.uuid4().hex[:12]}:"
    settings = load_settings(**overrides)
    await db.upgrade(settings)
    test_client = TestClient(TestServer(init_app(settings)))
    await test_client.start_server()
    platform = Platform(
        client=test_client,
        settings=settings,
        inbox=None,  # type: ignore[arg-type]
        backend=request.param,
        http_port=settings.http_port,
    )
    try:
        yield platform
    finally:
        slugs = {
            str(slug) for slug in await Deployment.all().values_list("service__slug", flat=True)
        }
        await test_client.close()
        await remove_services(slugs)


async def remove_services(slugs: set[str]) -> None:
    """What a test left on the engine: its services' containers and networks."""
    docker = aiodocker.Docker()
    try:
        for slug in slugs:
            label = {"label": [f"{runtime.LABEL_SERVICE}={slug}"]}
            for container in await docker.containers.list(all=True, filters=label):
                await container.delete(force=True)
            for network in await docker.networks.list(filters=label):
                await aiodocker.networks.DockerNetwork(docker, network["Id"]).delete()
            reference = json.dumps({"reference": [f"digi/{slug}-*"]})
            for image in await docker._query_json("images/json", params={"filters": reference}):
                for tag in image.get("RepoTags") or []:
                    await docker.images.delete(tag)
    finally:
        await docker.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 20, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within} s")
        await asyncio.sleep(0.1)

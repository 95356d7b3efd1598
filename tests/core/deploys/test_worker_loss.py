"""A worker killed (SIGKILL) in the middle of a deploy: after a restart the deploy finishes,
with no row stuck and no second container; on PostgreSQL + Redis (`digi worker` processes)
and on the embedded default (`digi server` on SQLite)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from digi_core import accounts, db
from digi_core.config import load_settings
from digi_core.models import Component, Deployment, DeploymentStatus
from digi_core.server.app import init_app
from tests.conftest import DIGI, REDIS_URL, TEST_SECRET, upgrade
from tests.core.deploys.conftest import free_port, remove_services
from tests.core.deploys.test_pipeline import containers_of

# Slow to become healthy: time to kill the worker while the new container starts.
SLOW = (
    '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000, '
    'healthcheckPath: "/health", startCommand: "sleep 3; exec httpd -f -p 8000 -h /www"}]'
)
CREATE = f'mutation {{ createService(name: "shop", components: {SLOW}) {{ id slug }} }}'
DEPLOY = "mutation($id: ID!) { deployService(serviceId: $id) { jobId } }"


class Processes:
    """`digi` subprocesses started by a test, killed at its end whatever happens."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *arguments: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"digi-{len(self.running)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([DIGI, *arguments], env=self.env, stdout=log, stderr=log)
        self.running.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.log_dir.glob("digi-*.log")))

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def processes(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    running = Processes(subprocess_env, tmp_path)
    yield running
    running.stop_all()


async def gql(
    client: aiohttp.ClientSession, url: str, token: str, query: str, **variables: Any
) -> Any:
    async with client.post(
        url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        body = await response.json()
    assert not body.get("errors"), body
    return body["data"]


async def wait_status(job_id: str, wanted: DeploymentStatus, within: float = 60) -> Deployment:
    deadline = time.monotonic() + within
    while True:
        row = await Deployment.get_or_none(job_id=job_id)
        if row is not None and row.status is wanted:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} at {row and row.status}, not {wanted}")
        await asyncio.sleep(0.1)


async def answers_through(port: int, hostname: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                f"http://127.0.0.1:{port}/health", headers={"Host": hostname}
            ) as response:
                seen = response.status, await response.text()
            if seen == (200, "ok\n"):
                return
            assert time.monotonic() < deadline, f"{hostname} answers {seen}"
            await asyncio.sleep(0.1)


async def until_container_starts(slug: str) -> None:
    deadline = time.monotonic() + 30
    while not await containers_of(slug):
        assert time.monotonic() < deadline, "the worker never started the container"
        await asyncio.sleep(0.05)


async def test_a_killed_digi_worker_is_replaced_and_its_deploy_resumed(
    tmp_path: Path,
    clean_env: Path,
    processes: Processes,
    postgres_url: str,
    docker_images: dict[str, str],
) -> None:
    prefix = f"digitest{uuid.uuid4().hex[:12]}:"
    common = {
        "DIGI_SECRET": TEST_SECRET,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": REDIS_URL,
        "DIGI_REDIS_PREFIX": prefix,
        "DIGI_LOAD_PLUGINS": "local,caddy",
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
        "DIGI_HTTP_PORT": str(free_port()),
        "DIGI_WORKER_HEARTBEAT": "0.5",
        "DIGI_WORKER_STALE_AFTER": "2",
        "DIGI_RECONCILE_INTERVAL": "1",
        "DIGI_DATA_DIR": str(tmp_path / "data"),
        # The API answers the internal DNS zone; the workers write it through the database.
        "DIGI_INTERNAL_DNS": os.environ["DIGI_INTERNAL_DNS"],
    }
    # The API alone in this process (it starts the Caddy); deploys run in `digi worker`s.
    settings = load_settings(**common, DIGI_RUN_WORKER="false")
    await upgrade(settings)
    api = TestClient(TestServer(init_app(settings)))
    await api.start_server()
    processes.env.update(common)
    slug = ""
    try:
        user = await accounts.create_user("owner@example.com", "correct horse battery", "Owner")
        _, token = await accounts.issue_token(TEST_SECRET, user, "test")
        url = str(api.make_url("/graphql"))
        async with aiohttp.ClientSession() as client:
            service = (await gql(client, url, token, CREATE))["createService"]
            slug = service["slug"]
            doomed = processes.start("worker")
            job_id = (await gql(client, url, token, DEPLOY, id=service["id"]))["deployService"][
                "jobId"
            ]
            await wait_status(job_id, DeploymentStatus.DEPLOYING)
            await until_container_starts(slug)
            doomed.kill()  # SIGKILL: no chance to hand the deploy back
            doomed.wait()
            processes.start("worker")
            row = await wait_status(job_id, DeploymentStatus.RUNNING, within=60)
        assert row.attempts == 2, processes.logs()
        containers = await containers_of(slug)
        assert [c["Labels"]["digi.deployment"] for c in containers] == [str(row.id)]
        assert containers[0]["Id"] == row.container_id
        # The worker's route reaches the app through the API's Caddy and zone.
        component = await Component.get(service__slug=slug)
        await answers_through(settings.http_port, f"{component.subdomain}.localhost")
    finally:
        processes.stop_all()
        await api.close()
        await remove_services({slug} if slug else set())


async def test_the_embedded_server_killed_mid_deploy_resumes_it_on_restart(
    tmp_path: Path,
    clean_env: Path,
    processes: Processes,
    docker_images: dict[str, str],
) -> None:
    port = free_port()
    data = tmp_path / "data"
    common = {
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": str(data),
        "DIGI_PORT": str(port),
        # No router: a Caddy child would outlive the SIGKILL of its parent.
        "DIGI_LOAD_PLUGINS": "local",
        "DIGI_INTERNAL_DNS": os.environ["DIGI_INTERNAL_DNS"],
    }
    settings = load_settings(**common)
    await upgrade(settings)
    await db.open_database(settings)
    processes.env.update(common)
    slug = ""
    try:
        user = await accounts.create_user("owner@example.com", "correct horse battery", "Owner")
        _, token = await accounts.issue_token(TEST_SECRET, user, "test")
        url = f"http://127.0.0.1:{port}/graphql"
        doomed = processes.start("server")
        async with aiohttp.ClientSession() as client:
            await wait_answering(client, f"http://127.0.0.1:{port}/healthz")
            service = (await gql(client, url, token, CREATE))["createService"]
            slug = service["slug"]
            job_id = (await gql(client, url, token, DEPLOY, id=service["id"]))["deployService"][
                "jobId"
            ]
            await wait_status(job_id, DeploymentStatus.DEPLOYING)
            await until_container_starts(slug)
            doomed.kill()
            doomed.wait()
            processes.start("server")
            row = await wait_status(job_id, DeploymentStatus.RUNNING, within=60)
        assert row.attempts == 2, processes.logs()
        containers = await containers_of(slug)
        assert [c["Labels"]["digi.deployment"] for c in containers] == [str(row.id)]
    finally:
        processes.stop_all()
        await db.close_database()
        await remove_services({slug} if slug else set())


async def wait_answering(client: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with client.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        await asyncio.sleep(0.2)

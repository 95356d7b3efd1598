"""What the benches share: the test image, ``digi server`` in a child process with
production settings, its first user, a GraphQL client, and the cleanup of what Digi made.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # The test suite's image recipe and throwaway database live in `tests`, which is not
    # installed: reuse them rather than keep a second copy that drifts.
    sys.path.insert(0, str(REPO))

import aiodocker  # noqa: E402
import aiohttp  # noqa: E402
import redis.asyncio as redis  # noqa: E402
from deploy_profile import PROBES_VARIABLE, SERVE_COMMAND  # noqa: E402
from rich.console import Console  # noqa: E402

from digi_core import accounts, db, runtime  # noqa: E402
from digi_core.config import Settings  # noqa: E402
from tests.conftest import (  # noqa: E402
    BASE_IMAGE,
    REDIS_URL,
    WEB_DOCKERFILE,
    WEB_IMAGE,
    WEB_START,
    _import,
    _tar,
    busybox_rootfs,
    throwaway_postgres,
)

console = Console(highlight=False)

APP_IMAGE, APP_PORT = WEB_IMAGE, 8000  # what both Digi and the floor run
COMPONENTS = (
    f'[{{name: "web", type: DOCKER, image: "{APP_IMAGE}", port: {APP_PORT}, '
    'healthcheckPath: "/health"}]'
)
PASSWORD = "bench horse battery staple"
DIGI = str(Path(sys.executable).with_name("digi"))
SERVER_START_SECONDS = 60.0
SERVER_STOP_SECONDS = 30.0
EVENT_SECONDS = 300.0
"""The longest a deploy job's subscription may stay silent (a slow build step's output)."""
# Settings of the caller's shell that would change what is measured; the child gets ours.
FOREIGN_PREFIXES = (
    *("DIGI_", "DATABASE_", "REDIS_", "PLATFORM_", "SMTP_", "PROXMOX_", "CLOUDFLARE_"),
    *("STRIPE_", "GITHUB_", "MASTER_CADDY"),
)


class BenchError(Exception):
    """The bench could not measure: the message says what went wrong."""


async def ensure_images(docker: aiodocker.Docker) -> None:
    """The test suite's web image (busybox httpd on port 8000) and its base, built offline
    when missing."""
    try:
        for image in (BASE_IMAGE, WEB_IMAGE):
            await docker.images.inspect(image)
        return
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise
    console.print(f"building {WEB_IMAGE} (as the test suite does)")
    await _import(docker, await asyncio.to_thread(busybox_rootfs), BASE_IMAGE)
    context = _tar({"Dockerfile": WEB_DOCKERFILE, "start.sh": WEB_START})
    await docker.images.build(
        fileobj=io.BytesIO(context), encoding="application/x-tar", tag=WEB_IMAGE
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def digi_settings(backend: str, workdir: Path) -> AsyncIterator[dict[str, str]]:
    """The server's environment: production settings on ``backend``; the throwaway database
    and the Redis keys are gone afterwards."""
    values = {
        "DIGI_ENV": "production",
        "DIGI_SECRET": secrets.token_hex(32),
        "DIGI_DATA_DIR": str(workdir / "data"),
        "DIGI_HOST": "127.0.0.1",
        "DIGI_PORT": str(free_port()),
        "DIGI_LOAD_PLUGINS": "local,caddy",
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
        "DIGI_HTTP_PORT": str(free_port()),
        # A reconcile pass (every 30 s by default) would land in some runs and not others;
        # deploy latency does not depend on it.
        "DIGI_RECONCILE_INTERVAL": "3600",
    }
    if backend == "sqlite":
        values["DATABASE_URL"] = f"sqlite://{workdir / 'data' / 'digi.sqlite3'}"
        yield values
        return
    prefix = f"digibench{secrets.token_hex(6)}:"
    async with throwaway_postgres() as url:
        values |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "DIGI_REDIS_PREFIX": prefix}
        try:
            yield values
        finally:
            # saq's keys embed the queue name, which starts with the prefix.
            client = redis.Redis.from_url(REDIS_URL)
            try:
                keys = [key async for key in client.scan_iter(match=f"*{prefix}*")]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


async def seed_user(settings: Settings) -> str:
    """A user and an API token, made directly (the API has no way to skip sign-up mail)."""
    await db.upgrade(settings)
    await db.open_database(settings)
    try:
        user = await accounts.create_user("bench@example.com", PASSWORD, "Bench")
        _, token = await accounts.issue_token(settings.secret_value, user, "bench")
    finally:
        await db.close_database()
    return token


@contextlib.asynccontextmanager
async def digi_server(
    values: dict[str, str], workdir: Path, probes: Path | None
) -> AsyncIterator[str]:
    """``digi server`` (with ``probes``, the probed one of ``deploy_profile``) until it
    answers /healthz, which it does once its Caddy runs; stopped with SIGTERM afterwards."""
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_PREFIXES)
    }
    env |= values
    command: tuple[str, ...] = (DIGI, "server")
    if probes is not None:
        env[PROBES_VARIABLE] = str(probes)
        command = SERVE_COMMAND
    log_path = workdir / "server.log"
    log_file = await asyncio.to_thread(log_path.open, "wb")
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        cwd=workdir,  # no .env of the caller's
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{values['DIGI_PORT']}"
    try:
        await _until_healthy(process, api_url)
        yield api_url
    except BenchError as error:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise BenchError(f"{error}\nthe server's log ends with:\n{tail}") from None
    finally:
        await _stop(process, values["DIGI_CADDY_ADMIN_URL"])
        log_file.close()


async def _until_healthy(process: asyncio.subprocess.Process, api_url: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(f"{api_url}/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise BenchError("digi server did not answer in time")
            await asyncio.sleep(0.2)
    raise BenchError(f"digi server exited with {process.returncode}")


async def _stop(process: asyncio.subprocess.Process, caddy_admin_url: str) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), SERVER_STOP_SECONDS)
    except TimeoutError:
        console.print("[yellow]digi server ignored SIGTERM: killing it and its Caddy[/]")
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        # Digi starts Caddy in a session of its own: ask Caddy itself to stop.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await session.post(f"{caddy_admin_url}/stop")


async def clients(
    stack: contextlib.AsyncExitStack, api_url: str, token: str
) -> tuple[Api, aiohttp.ClientSession]:
    """The first user's API client, and a poller for apps' first answers (a fresh
    connection each time, a short timeout), both closed with ``stack``."""
    session = await stack.enter_async_context(aiohttp.ClientSession())
    poller = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=2),
        )
    )
    return Api(session, api_url, token), poller


@dataclass
class Service:
    id: str
    slug: str
    name: str
    hostname: str
    """The first component with a URL's (managed databases have none)."""


@dataclass
class JobEvent:
    seconds: float
    """Since the ``since`` given to ``Api.job_events`` (``time.perf_counter``), when it came."""
    component: str
    status: str
    message: str


class Api:
    """GraphQL over HTTP (and subscriptions over graphql-transport-ws) as a user's client
    sends it."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = f"{url}/graphql"
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = {"query": query, "variables": variables or {}}
        async with self.session.post(self.url, json=body, headers=self.headers) as response:
            answer = await response.json()
        if answer.get("errors"):
            raise BenchError(f"GraphQL error: {answer['errors'][0].get('message')}")
        return answer["data"]

    async def create_service(self, name: str = "bench", components: str = COMPONENTS) -> Service:
        """A service of ``components`` (a GraphQL list literal)."""
        query = f'mutation {{ createService(name: "{name}", components: {components}) '
        created = (await self.gql(query + "{ id slug components { url } } }"))["createService"]
        url = next(found["url"] for found in created["components"] if found["url"])
        hostname = url.split("://", 1)[1].split("/")[0].split(":")[0]
        return Service(created["id"], created["slug"], name, hostname)

    async def update_components(self, service: Service, components: str) -> None:
        await self.gql(
            f"mutation($id: ID!) {{ updateService(id: $id, components: {components}) {{ id }} }}",
            {"id": service.id},
        )

    async def delete_service(self, service: Service) -> None:
        await self.gql(
            "mutation($id: ID!, $confirm: String!) "
            "{ deleteService(id: $id, confirm: $confirm) { removed } }",
            {"id": service.id, "confirm": service.name},
        )

    async def set_marker(self, service: Service, marker: str) -> None:
        await self.gql(
            "mutation($id: ID!, $vars: [EnvVarInput!]!) "
            "{ setEnvVars(serviceId: $id, vars: $vars) { key } }",
            {"id": service.id, "vars": [{"key": "COMPONENT", "value": marker}]},
        )

    async def deploy_job(self, service: Service) -> tuple[str, list[str]]:
        """Deploy every component: the job's id and its deployments' ids."""
        data = await self.gql(
            "mutation($id: ID!) { deployService(serviceId: $id) { jobId deployments { id } } }",
            {"id": service.id},
        )
        answer = data["deployService"]
        return str(answer["jobId"]), [str(row["id"]) for row in answer["deployments"]]

    async def deploy(self, service: Service) -> str:
        return (await self.deploy_job(service))[1][0]

    async def latest_deployment(self, service: Service) -> dict[str, Any]:
        data = await self.gql(
            "query($id: ID!) { service(id: $id) { deployments(limit: 1) { id status error } } }",
            {"id": service.id},
        )
        return dict(data["service"]["deployments"][0])

    async def job_events(self, job_id: str, since: float) -> AsyncIterator[JobEvent]:
        """``deploymentStatus(jobId)``: the job's rows as they are, then every status change
        and line of build output until each deployment is final."""
        query = (
            "subscription($job: String!) "
            "{ deploymentStatus(jobId: $job) { component status message } }"
        )
        ws_url = self.url.replace("http://", "ws://", 1)
        async with self.session.ws_connect(ws_url, protocols=["graphql-transport-ws"]) as ws:
            await ws.send_json({"type": "connection_init", "payload": {"token": self.token}})
            if (await ws.receive_json(timeout=10))["type"] != "connection_ack":
                raise BenchError("the server refused the subscription's connection")
            payload = {"query": query, "variables": {"job": job_id}}
            await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
            while (message := await ws.receive_json(timeout=EVENT_SECONDS))["type"] != "complete":
                if message["type"] != "next":
                    raise BenchError(f"deploymentStatus answered {message}")
                event = message["payload"]["data"]["deploymentStatus"]
                yield JobEvent(
                    time.perf_counter() - since,
                    event["component"],
                    event["status"],
                    event["message"] or "",
                )


async def remove_service(docker: aiodocker.Docker, service: Service) -> None:
    """The service's containers, network, data volumes and pinned images: Digi leaves them
    in place when it stops, and a failed run may not have deleted the service."""
    label = f"{runtime.LABEL_SERVICE}={service.slug}"
    for container in await docker.containers.list(all=True, filters={"label": [label]}):
        await container.delete(force=True)
    with contextlib.suppress(aiodocker.DockerError):
        await (await docker.networks.get(runtime.network_name(service.slug))).delete()
    volumes: set[str] = set()
    for filters in ({"label": [label]}, {"name": [f"digi-{service.slug}-"]}):
        found = await docker._query_json("volumes", params={"filters": json.dumps(filters)})
        volumes |= {str(volume["Name"]) for volume in found.get("Volumes") or []}
    for name in volumes:
        with contextlib.suppress(aiodocker.DockerError):
            async with docker._query(f"volumes/{name}", method="DELETE"):
                pass
    prefix = f"digi/{service.slug}-"
    for image in await docker.images.list(filters={"reference": [f"{prefix}*"]}):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                with contextlib.suppress(aiodocker.DockerError):
                    await docker.images.delete(tag)

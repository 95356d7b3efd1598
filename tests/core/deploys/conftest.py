"""The whole platform for deploy tests: the API with its worker, this machine's Docker engine
and a Caddy the app starts itself, on the embedded default (SQLite, in-process queue) and on
PostgreSQL + Redis (saq); test images built offline; Git repositories served by `git daemon`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from digi_core import runtime
from digi_core.config import load_settings
from digi_core.models import Deployment, DeploymentStatus
from digi_core.server.app import init_app
from digi_core.server.keys import WORKER
from tests.conftest import REDIS_URL, TEST_SECRET, _import, _tar, upgrade
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


DB_BASE_IMAGE = "digi-test-db-base:latest"
DB_PACKAGES = "postgresql,redis-server,busybox"
POSTGRES_IMAGE = "digi-test-postgres:latest"
REDIS_IMAGE = "digi-test-redis:latest"
STACK_APP_IMAGE = "digi-test-stack-app:latest"
# The official postgres image's interface (POSTGRES_USER/PASSWORD/DB, its data directory),
# on Debian's PostgreSQL 15.
POSTGRES_START = b"""\
#!/bin/sh
set -e
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
AS_POSTGRES="setpriv --reuid=postgres --regid=postgres --init-groups"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "$POSTGRES_PASSWORD" > /tmp/password && chown postgres /tmp/password
  $AS_POSTGRES $BIN/initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/password \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm /tmp/password
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  $AS_POSTGRES $BIN/pg_ctl -D "$PGDATA" -o "-c listen_addresses=" -w start >/dev/null
  $AS_POSTGRES $BIN/createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
  $AS_POSTGRES $BIN/pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec $AS_POSTGRES $BIN/postgres -D "$PGDATA"
"""
# An app that writes a row and a key on each start, then serves what it reads back.
STACK_APP_START = b"""\
#!/bin/sh
set -e
mkdir -p /www && echo ok > /www/health
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS visits (n int)" \
  -c "INSERT INTO visits VALUES (1)"
redis-cli -u "$REDIS_URL" --no-auth-warning INCR visits >/dev/null
rows=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM visits")
key=$(redis-cli -u "$REDIS_URL" --no-auth-warning GET visits)
echo "rows=$rows key=$key" > /www/index.html
exec busybox httpd -f -p 8000 -h /www
"""


@pytest.fixture(scope="session")
async def database_images(docker_images: dict[str, str], tmp_path_factory: Any) -> dict[str, str]:
    """PostgreSQL, Redis and an app using both, from Debian's packages (debootstrap once per
    machine: the base image is kept between runs)."""
    docker = aiodocker.Docker()
    try:
        try:
            await docker.images.inspect(DB_BASE_IMAGE)
        except aiodocker.DockerError:
            root = tmp_path_factory.mktemp("dbroot")
            await _run(
                "debootstrap",
                "--variant=minbase",
                f"--include={DB_PACKAGES}",
                "bookworm",
                str(root / "fs"),
                "http://deb.debian.org/debian",
            )
            await _run("tar", "-C", str(root / "fs"), "-cf", str(root / "fs.tar"), ".")
            with (root / "fs.tar").open("rb") as archive:
                await _import(docker, archive, DB_BASE_IMAGE)
        for tag, start, entrypoint in [
            (POSTGRES_IMAGE, POSTGRES_START, '["sh", "/start.sh"]'),
            (STACK_APP_IMAGE, STACK_APP_START, '["sh", "/start.sh"]'),
            (REDIS_IMAGE, b"", '["redis-server"]'),
        ]:
            dockerfile = f"FROM {DB_BASE_IMAGE}\nCOPY start.sh /start.sh\nCMD {entrypoint}\n"
            context = _tar({"Dockerfile": dockerfile.encode(), "start.sh": start})
            await docker.images.build(
                fileobj=io.BytesIO(context), encoding="application/x-tar", tag=tag
            )
    finally:
        await docker.close()
    return {"postgres": POSTGRES_IMAGE, "redis": REDIS_IMAGE, "app": STACK_APP_IMAGE}


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"{command[0]} failed:\n{output.decode()[-2000:]}"


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
        self,
        hostname: str,
        status: int,
        body: str | None = None,
        within: float = 5,
        *,
        contains: str = "",
    ) -> None:
        """``hostname`` answers ``status`` (and ``body``, or a body that ``contains``) through
        Caddy within a few seconds: Caddy may serve a request or two with its previous
        config after a change, and a moved route takes the router's settle time."""
        deadline = time.monotonic() + within
        while True:
            seen = await self.get(hostname)
            if (
                seen[0] == status
                and (body is None or seen[1].strip() == body)
                and contains in seen[1]
            ):
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
    async with running_platform(request.param, tmp_path, postgres_url) as platform:
        yield platform


@contextlib.asynccontextmanager
async def running_platform(
    backend: str, tmp_path: Path, postgres_url: str = "", **extra: Any
) -> AsyncIterator[Platform]:
    """The API (on ``DIGI_PORT``, where Caddy's TLS ``ask`` reaches it) with its worker and
    Caddy; ``extra`` settings on top of the tests' usual ones."""
    # The API's socket is bound first and held: a port only probed could be taken (by the
    # Caddy the app starts, say) before the server binds it.
    api_socket = socket.socket()
    api_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    api_socket.bind(("127.0.0.1", 0))
    overrides: dict[str, Any] = {
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": tmp_path / "data",
        "DIGI_LOAD_PLUGINS": "local,caddy,railpack",
        "DIGI_PORT": api_socket.getsockname()[1],
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
        "DIGI_HTTP_PORT": free_port(),
        "DIGI_HEALTHCHECK_TIMEOUT": 15,
        "DIGI_DRAIN_SECONDS": 0.3,
        "DIGI_ROUTE_REFRESH": 0.2,
        "DIGI_STOP_TIMEOUT": 2,
        # Tests run the reconciler's passes themselves.
        "DIGI_RECONCILE_INTERVAL": 3600,
        "DIGI_POSTGRES_IMAGE": POSTGRES_IMAGE,
        "DIGI_REDIS_IMAGE": REDIS_IMAGE,
    }
    if backend == "postgres+redis":
        overrides["DATABASE_URL"] = postgres_url
        overrides["REDIS_URL"] = REDIS_URL
        overrides["DIGI_REDIS_PREFIX"] = f"digitest{uuid.uuid4().hex[:12]}:"
    settings = load_settings(**overrides | extra)
    await upgrade(settings)
    server = TestServer(init_app(settings), socket_factory=lambda *_: api_socket)
    test_client = TestClient(server)
    await test_client.start_server()
    platform = Platform(
        client=test_client,
        settings=settings,
        inbox=None,  # type: ignore[arg-type]
        backend=backend,
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
            volumes = await docker.volumes.list(
                filters={"label": f"{runtime.LABEL_SERVICE}={slug}"}
            )
            for volume in volumes.get("Volumes") or []:
                await aiodocker.volumes.DockerVolume(docker, volume["Name"]).delete()
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


class Repositories:
    """Bare repositories under ``root``, served read-only by `git daemon`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def make(self, name: str, files: dict[str, str]) -> str:
        """A new repository with one commit of ``files`` on main; answers the commit."""
        work = self.root / f"{name}-work"
        git(work.parent, "init", "-q", "-b", "main", str(work))
        git(work, "config", "user.email", "test@example.com")
        git(work, "config", "user.name", "Test")
        sha = self.commit(name, files)
        return sha

    def commit(self, name: str, files: dict[str, str]) -> str:
        work = self.root / f"{name}-work"
        for path, content in files.items():
            (work / path).write_text(content)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "change")
        bare = self.root / f"{name}.git"
        if not bare.exists():
            git(self.root, "clone", "-q", "--bare", str(work), str(bare))
        else:
            git(work, "push", "-q", str(bare), "main")
        return git(work, "rev-parse", "HEAD").strip()


def git(cwd: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repositories(tmp_path: Path) -> Iterator[Repositories]:
    root = tmp_path / "repos"
    root.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={root}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)
    yield Repositories(root, port)
    daemon.terminate()
    daemon.wait(10)

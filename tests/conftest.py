"""Fixtures that start or reach the real components: PostgreSQL, Redis, Docker, databases."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import aiodocker
import asyncpg
import pytest
import redis

from digi_core import db
from digi_core.config import Settings, load_settings

POSTGRES_URL = os.environ.get(
    "DIGI_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DIGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# One per run: containers carry an installation label derived from the secret, so two runs on
# one Docker engine (a developer's and CI's) never reconcile away each other's containers.
TEST_SECRET = "test-secret-" + secrets.token_hex(20)
REPO = Path(__file__).resolve().parent.parent
DIGI = str(Path(sys.executable).with_name("digi"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """A missing component fails the run at once, with what to start: never a skip."""
    problems = []
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        problems.append(f"Redis at {REDIS_URL}: {error}")
    try:
        asyncio.run(_ping_postgres())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        problems.append(f"PostgreSQL at {POSTGRES_URL}: {error}")
    if not Path("/var/run/docker.sock").exists() and not os.environ.get("DOCKER_HOST"):
        problems.append("Docker: no engine socket (scripts/test.sh starts dockerd)")
    if problems:
        pytest.exit("missing components:\n  " + "\n  ".join(problems), returncode=1)


async def _ping_postgres() -> None:
    connection = await asyncpg.connect(_libpq(POSTGRES_URL), timeout=5)
    await connection.close()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A test that leaves a non-daemon thread behind (an unclosed SQLite connection is one)
    would hang the interpreter's exit, and CI until its time limit: fail at once instead."""
    _templates.remove()
    leaked = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]
    if leaked:
        sys.stderr.write(f"\nerror: tests left threads running: {', '.join(leaked)}\n")
        sys.stderr.flush()
        os._exit(3)


def _libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Digi variable from the caller's environment, and a cwd without a ``.env``."""
    for name in list(os.environ):
        if name in Settings.model_fields or name.startswith(("DIGI_", "PROXMOX_", "STRIPE_")):
            monkeypatch.delenv(name)
    for name in ("DATABASE_URL", "REDIS_URL", "PLATFORM_DOMAIN", "BETTER_AUTH_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # Each app a test starts answers its internal DNS zone on a port of its own.
    monkeypatch.setenv("DIGI_INTERNAL_DNS", f"127.0.0.1:{free_udp_port()}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    async with throwaway_postgres() as url:
        yield url


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    name = f"digi_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(_libpq(POSTGRES_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin = await asyncpg.connect(_libpq(POSTGRES_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs on the embedded SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'digi.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path, clean_env: Path) -> Settings:
    return load_settings(
        DATABASE_URL=database_url, DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=tmp_path / "data"
    )


class _Templates:
    """Databases migrated once per run, copied for each test instead of migrating again
    (SQLite: a file; PostgreSQL: a template database). ~0.1 s a test instead of ~0.6."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="digi-test-templates-"))
        self.postgres = f"digi_test_template_{secrets.token_hex(4)}"
        self._made: dict[str, bool] = {}
        self._lock = asyncio.Lock()

    async def _made_once(self, kind: str) -> None:
        async with self._lock:
            if self._made.get(kind):
                return
            if kind == "sqlite":
                url = f"sqlite://{self.directory / 'digi.sqlite3'}"
            else:
                await _admin_sql(f'CREATE DATABASE "{self.postgres}"')
                url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{self.postgres}"
            await db.upgrade(
                load_settings(
                    DATABASE_URL=url, DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=self.directory
                )
            )
            self._made[kind] = True

    async def seed(self, database_url: str) -> None:
        """Make a new, empty database a copy of the migrated template."""
        if database_url.startswith("sqlite://"):
            path = Path(database_url.removeprefix("sqlite://"))
            if not await asyncio.to_thread(path.exists):
                await self._made_once("sqlite")
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
                await asyncio.to_thread(shutil.copyfile, self.directory / "digi.sqlite3", path)
            return
        name = database_url.rsplit("/", 1)[1]
        connection = await asyncpg.connect(_libpq(database_url))
        try:
            empty = not await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
        finally:
            await connection.close()
        if empty:
            await self._made_once("postgres")
            await _admin_sql(f'DROP DATABASE "{name}"')
            await _admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.postgres}"')

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._made.get("postgres"):
            asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{self.postgres}" WITH (FORCE)'))


_templates = _Templates()


async def upgrade(settings: Settings) -> None:
    """``db.upgrade`` for a test's new database, from a copy of one migrated once per run.
    (The migrations themselves are tested from empty databases in test_migrations.py.)"""
    await _templates.seed(settings.database_url)
    await db.upgrade(settings)


async def _admin_sql(statement: str) -> None:
    admin = await asyncpg.connect(_libpq(POSTGRES_URL))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
async def migrated(settings: Settings) -> AsyncIterator[Settings]:
    """An empty database brought up to date by the migrations, and Tortoise connected to it."""
    await upgrade(settings)
    await db.open_database(settings)
    yield settings
    await db.close_database()


@pytest.fixture
def subprocess_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment for a ``digi`` subprocess: no Digi settings, a private HOME."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DIGI_", "DATABASE_", "REDIS_", "PLATFORM_"))
    }
    env["HOME"] = str(tmp_path / "home")
    env.pop("XDG_DATA_HOME", None)
    yield env


BASE_IMAGE = "digi-test-base:latest"
WEB_IMAGE = "digi-test-web:latest"
# busybox httpd as the app: / answers "hello from <COMPONENT>", /health answers "ok".
WEB_DOCKERFILE = b"""\
FROM digi-test-base:latest
RUN mkdir -p /www && echo ok > /www/health
COPY start.sh /start.sh
CMD ["sh", "/start.sh"]
"""
WEB_START = b"""\
echo "hello from ${COMPONENT:-web}" > /www/index.html
echo serving
exec httpd -f -v -p 8000 -h /www
"""


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture(scope="session")
async def docker_images() -> AsyncIterator[dict[str, str]]:
    """Test images made offline: a base from this machine's static busybox (docker import),
    and an HTTP app built FROM it through the engine's API builder."""
    docker = aiodocker.Docker()
    try:
        await _import(docker, await asyncio.to_thread(busybox_rootfs), BASE_IMAGE)
        context = _tar({"Dockerfile": WEB_DOCKERFILE, "start.sh": WEB_START})
        await docker.images.build(
            fileobj=io.BytesIO(context), encoding="application/x-tar", tag=WEB_IMAGE
        )
        yield {"base": BASE_IMAGE, "web": WEB_IMAGE}
    finally:
        await docker.close()


def busybox_rootfs() -> bytes:
    """The base image's root filesystem: this machine's static busybox and a few applets."""
    busybox = Path("/bin/busybox").read_bytes()
    applets = ["sh", "httpd", "echo", "sleep", "cat", "mkdir", "nc", "wget", "ls", "env"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            archive.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(busybox), 0o755
        archive.addfile(info, io.BytesIO(busybox))
        for applet in applets:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
    return buffer.getvalue()


async def _import(docker: aiodocker.Docker, rootfs: bytes | BinaryIO, tag: str) -> None:
    repo, _, version = tag.partition(":")
    async with docker._query(  # the engine's image import (`docker import`) over the API
        "images/create",
        method="POST",
        params={"fromSrc": "-", "repo": repo, "tag": version},
        data=rootfs,
        headers={"Content-Type": "application/x-tar"},
    ) as response:
        answer = await response.text()
    assert '"error"' not in answer, answer

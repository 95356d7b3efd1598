"""The HTTP server: health of its parts, GraphQL, error masking, and `digi server` itself."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import strawberry
from aiohttp.test_utils import TestClient, TestServer

from digi_core import db
from digi_core.api.schema import make_schema
from digi_core.config import Environment, Settings, load_settings
from digi_core.errors import PlanLimit
from digi_core.server.app import init_app
from tests.conftest import (
    DIGI,
    POSTGRES_URL,
    REDIS_URL,
    TEST_SECRET,
    _libpq,
    free_udp_port,
    upgrade,
)


async def _client(settings: Settings) -> TestClient:  # type: ignore[type-arg]
    # Apps alive at once answer their internal DNS zones on ports of their own.
    settings = settings.model_copy(update={"internal_dns": f"127.0.0.1:{free_udp_port()}"})
    client = TestClient(TestServer(init_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client(migrated: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    await db.close_database()  # the app opens its own connection in its cleanup_ctx
    client = await _client(migrated)
    yield client
    await client.close()


async def test_healthz_and_graphql(client: TestClient) -> None:  # type: ignore[type-arg]
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["checks"] == {"database": "ok"}
    answer = await client.post("/graphql", json={"query": "{ __typename version }"})
    assert await answer.json() == {"data": {"__typename": "Query", "version": "0.1.0"}}


async def test_graphiql_outside_production_only(
    client: TestClient,
    settings: Settings,  # type: ignore[type-arg]
) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status == 200 and "graphiql" in (await page.text()).lower()

    production = await _client(settings.model_copy(update={"environment": Environment.PRODUCTION}))
    try:
        page = await production.get("/graphql", headers={"Accept": "text/html"})
        assert page.status == 404
    finally:
        await production.close()


async def test_healthz_checks_redis_when_configured(tmp_path: Path, clean_env: Path) -> None:
    base = {"DIGI_SECRET": TEST_SECRET, "DIGI_DATA_DIR": tmp_path / "data"}
    with_redis = await _client(load_settings(**base, REDIS_URL=REDIS_URL))
    try:
        health = await (await with_redis.get("/healthz")).json()
        assert health["checks"] == {"database": "ok", "redis": "ok"}
    finally:
        await with_redis.close()

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    without = await _client(load_settings(**base, REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    try:
        response = await without.get("/healthz")
        body = await response.json()
        assert response.status == 503
        assert body["status"] == "fail"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error: ConnectionError")
    finally:
        await without.close()


async def test_healthz_names_a_database_that_is_down(
    postgres_url: str, tmp_path: Path, clean_env: Path
) -> None:
    """A real outage: PostgreSQL stops taking connections and drops the app's."""
    settings = load_settings(
        DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=tmp_path / "data", DATABASE_URL=postgres_url
    )
    await upgrade(settings)
    client = await _client(settings)
    name = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(_libpq(POSTGRES_URL))
    try:
        assert (await client.get("/healthz")).status == 200
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        response = await client.get("/healthz")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "fail"
        assert body["checks"]["database"].startswith("error:")
    finally:
        await client.close()
        await admin.close()


async def test_errors_carry_codes_and_unexpected_ones_are_masked() -> None:
    @strawberry.type
    class Query:
        @strawberry.field
        def limited(self) -> str:
            raise PlanLimit("custom domains need the Pro plan: upgrade with `digi billing`")

        @strawberry.field
        def broken(self) -> str:
            raise RuntimeError("SELECT * FROM users -- secret internals")

    schema = make_schema(Query)
    result = await schema.execute("{ limited }")
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "PLAN_LIMIT"}
    assert "Pro plan" in result.errors[0].message

    result = await schema.execute("{ broken }")
    assert result.errors is not None
    assert result.errors[0].message == "Internal error."
    assert "SELECT" not in json.dumps(result.errors[0].formatted)


def test_digi_server_with_no_environment(subprocess_env: dict[str, str]) -> None:
    """The README's promise: no settings at all, and /healthz and GraphQL answer."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [DIGI, "server", "--port", str(port)],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = _wait_for(f"http://127.0.0.1:{port}/healthz")
        assert health == {"status": "ok", "version": "0.1.0", "checks": {"database": "ok"}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": "{ __typename }"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response) == {"data": {"__typename": "Query"}}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        assert process.returncode == 0, output
        assert "applied migration digi.0001_initial" in output
        assert "Tortoise-ORM shutdown" in output  # cleanup_ctx ran: a graceful stop
        data_dir = Path(subprocess_env["HOME"]) / ".local" / "share" / "digi"
        assert (data_dir / "digi.sqlite3").exists() and (data_dir / "secret").exists()
    finally:
        process.kill()
        process.wait()


def test_server_on_postgres_refuses_pending_migrations(
    postgres_url: str, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "DATABASE_URL": postgres_url, "DIGI_SECRET": TEST_SECRET}
    refused = subprocess.run([DIGI, "server"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 6
    assert "run `digi db upgrade` first" in refused.stderr
    assert "Traceback" not in refused.stderr

    status = subprocess.run([DIGI, "db", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 1 and "pending 0001_initial" in status.stdout
    upgrade = subprocess.run([DIGI, "db", "upgrade"], env=env, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "applied digi.0002_domains_one_default" in upgrade.stdout
    status = subprocess.run([DIGI, "db", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout


def _wait_for(url: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

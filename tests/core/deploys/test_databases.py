"""Managed PostgreSQL and Redis: a digi.toml stack of app + postgres + redis where the app
connects with its injected URLs and writes; the data survives a database's replacement."""

from __future__ import annotations

from typing import Any

import aiodocker

from digi_core.models import Deployment, DeploymentStatus
from tests.core.deploys.conftest import Platform
from tests.core.deploys.test_pipeline import hostname

DIGI_TOML = """\
name = "stack"

[services.app]
type = "docker"
image = "digi-test-stack-app:latest"
port = 8000
healthcheck = "/health"

[services.app.env]
MY_DB = "${{ db.DATABASE_URL }}"

[services.db]
type = "postgres"

[services.cache]
type = "redis"
"""
APPLY = (
    "mutation($toml: String!) { applyStack(toml: $toml) "
    "{ created service { id slug components { id name url } } } }"
)


async def deploy(
    platform: Platform, token: str, service: dict[str, Any], **only: Any
) -> list[Deployment]:
    job = await platform.deploy(token, service["id"], **only)
    rows = await platform.wait_job(job["jobId"], within=120)
    assert all(row.status is DeploymentStatus.RUNNING for row in rows), [r.error for r in rows]
    return rows


async def test_an_app_with_postgres_and_redis_writes_and_the_data_outlives_the_database(
    platform: Platform, database_images: dict[str, str]
) -> None:
    _, token = await platform.user("owner@example.com")
    applied = (await platform.gql(APPLY, {"toml": DIGI_TOML}, token=token))["applyStack"]
    assert sorted(applied["created"]) == ["app", "cache", "db"]
    service = applied["service"]
    service["components"].sort(key=lambda component: component["name"] != "app")
    await deploy(platform, token, service)
    host = hostname(service, platform)
    await platform.expect(host, 200, "rows=1 key=1")

    docker = aiodocker.Docker()
    try:
        [app] = await Deployment.filter(component__name="app", status=DeploymentStatus.RUNNING)
        env = (await (await docker.containers.get(app.container_id or "")).show())["Config"]["Env"]
        url = next(value for value in env if value.startswith("DATABASE_URL="))
        # The reference resolved to the same URL the platform injected.
        assert f"MY_DB={url.removeprefix('DATABASE_URL=')}" in env
        assert url.startswith("DATABASE_URL=postgresql://digi:") and "@db:5432/app" in url

        # Deploying the database again with nothing changed keeps the running server.
        [db] = await Deployment.filter(component__name="db", status=DeploymentStatus.RUNNING)
        [again] = await deploy(platform, token, service, only=["db"])
        assert again.container_id == db.container_id and again.message == "unchanged: kept running"

        # A new image replaces the server on the same volume: the data is still there.
        await docker.images.build(
            fileobj=_dockerfile(f"FROM {database_images['postgres']}\nLABEL version=2\n"),
            encoding="application/x-tar",
            tag="digi-test-postgres:v2",
        )
        await platform.gql(
            'mutation($id: ID!) { updateService(id: $id, components: [{name: "db", '
            'type: POSTGRES, image: "digi-test-postgres:v2"}]) { id } }',
            {"id": service["id"]},
            token=token,
        )
        [replaced] = await deploy(platform, token, service, only=["db"])
        assert replaced.container_id != db.container_id
        await deploy(platform, token, service, only=["app"])
        await platform.expect(host, 200, "rows=2 key=2")
    finally:
        await docker.close()


def _dockerfile(text: str) -> Any:
    import io

    from tests.conftest import _tar

    return io.BytesIO(_tar({"Dockerfile": text.encode()}))


async def test_an_unknown_reference_fails_the_deploy_saying_which(
    platform: Platform, database_images: dict[str, str]
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token,
        "typo",
        '[{name: "app", type: DOCKER, image: "digi-test-web:latest", '
        'env: [{key: "URL", value: "${{ dbb.DATABASE_URL }}"}]}, {name: "db", type: POSTGRES}]',
    )
    job = await platform.deploy(token, service["id"], only=["app"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "dbb" in (row.error or "") and "no component" in (row.error or "")


async def test_a_database_that_fails_to_replace_brings_the_old_server_back(
    platform: Platform, database_images: dict[str, str]
) -> None:
    _, token = await platform.user("owner@example.com")
    applied = (await platform.gql(APPLY, {"toml": DIGI_TOML}, token=token))["applyStack"]
    service = applied["service"]
    service["components"].sort(key=lambda component: component["name"] != "app")
    await deploy(platform, token, service)
    docker = aiodocker.Docker()
    try:
        await docker.images.build(
            fileobj=_dockerfile(
                f'FROM {database_images["postgres"]}\nCMD ["sh", "-c", "echo broken; exit 3"]\n'
            ),
            encoding="application/x-tar",
            tag="digi-test-postgres:broken",
        )
    finally:
        await docker.close()
    await platform.gql(
        'mutation($id: ID!) { updateService(id: $id, components: [{name: "db", '
        'type: POSTGRES, image: "digi-test-postgres:broken"}]) { id } }',
        {"id": service["id"]},
        token=token,
    )
    job = await platform.deploy(token, service["id"], only=["db"])
    [failed] = await platform.wait_job(job["jobId"], within=60)
    assert failed.status is DeploymentStatus.FAILED and "broken" in (failed.error or "")
    rows = await Deployment.filter(component__name="db").order_by("id")
    assert [row.status for row in rows] == [DeploymentStatus.RUNNING, DeploymentStatus.FAILED], [
        (row.status, row.message, row.error) for row in rows
    ]
    # The old server is back with its data: the app's next start writes a second row.
    await deploy(platform, token, service, only=["app"])
    await platform.expect(hostname(service, platform), 200, "rows=2 key=2")

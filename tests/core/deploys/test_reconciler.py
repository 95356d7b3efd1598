"""The reconciler against real drift: containers removed or stopped behind Digi's back,
orphans, deploys whose worker vanished or that overran, routes lost from Caddy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiodocker
import aiohttp

from digi_core import runtime
from digi_core.models import Deployment, DeploymentStatus
from digi_core.providers import Host
from tests.core.deploys.conftest import Platform
from tests.core.deploys.test_pipeline import containers_of, deployed, hostname


async def test_a_removed_container_is_recreated_and_counted(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    [container] = await containers_of(service["slug"])
    docker = aiodocker.Docker()
    try:
        await (await docker.containers.get(container["Id"])).delete(force=True)
    finally:
        await docker.close()
    host = hostname(service, platform)
    assert (await platform.get(host))[0] == 502  # Caddy's upstream is gone

    repairs = await platform.worker.reconciler.reconcile()
    assert repairs["recreated"] == 1
    [again] = await containers_of(service["slug"])
    assert again["Labels"] == container["Labels"] and again["Id"] != container["Id"]
    await platform.expect(host, 200, "hello from web")
    [row] = await Deployment.filter(service_id=int(service["id"]))
    assert row.container_id == again["Id"]
    # A second pass finds nothing to do.
    assert sum((await platform.worker.reconciler.reconcile()).values()) == 0

    metrics = await platform.client.get("/metrics")
    text = await metrics.text()
    assert 'digi_reconciler_repairs_total{kind="recreated"} 1.0' in text
    assert 'digi_deployments{status="running"} 1.0' in text


async def test_a_container_stopped_behind_digis_back_is_brought_back(
    platform: Platform,
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    [container] = await containers_of(service["slug"])
    docker = aiodocker.Docker()
    try:
        await (await docker.containers.get(container["Id"])).stop()
    finally:
        await docker.close()
    repairs = await platform.worker.reconciler.reconcile()
    assert repairs["recreated"] == 1
    await platform.expect(hostname(service, platform), 200)


async def test_an_orphan_container_is_removed(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    host: Host = await platform.worker.deps.compute.host_for_service(None, _no_log)
    installation = platform.settings.installation_id
    orphan, foreign = [
        await runtime.run_container(
            host,
            runtime.ContainerSpec(
                service["slug"],
                name,
                999_999,
                "digi-test-base:latest",
                command=["sleep", "600"],
                installation=owner,
            ),
        )
        for name, owner in [("stray", installation), ("theirs", "another-digi")]
    ]
    repairs = await platform.worker.reconciler.reconcile()
    assert repairs["orphans_removed"] == 1
    remaining = [c["Id"] for c in await containers_of(service["slug"])]
    # Another installation's container on the same engine is not this Digi's to remove.
    assert orphan not in remaining and foreign in remaining and len(remaining) == 2


async def _no_log(line: str) -> None:
    return None


async def test_a_deploy_whose_worker_vanished_is_resumed_or_failed(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token,
        "shop",
        '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000}, '
        '{name: "api", type: DOCKER, image: "digi-test-web:latest", port: 8000}]',
    )
    web, api = service["components"]
    silent = datetime.now(UTC) - timedelta(minutes=5)
    resumable = await Deployment.create(
        service_id=int(service["id"]),
        component_id=int(web["id"]),
        job_id="job_lost1",
        status=DeploymentStatus.DEPLOYING,
        attempts=1,
        claimed_by="gone:1",
    )
    exhausted = await Deployment.create(
        service_id=int(service["id"]),
        component_id=int(api["id"]),
        job_id="job_lost2",
        status=DeploymentStatus.BUILDING,
        attempts=2,
        claimed_by="gone:1",
    )
    await Deployment.filter(id__in=[resumable.id, exhausted.id]).update(updated_at=silent)

    repairs = await platform.worker.reconciler.reconcile()
    assert repairs["resumed"] == 1 and repairs["failed_after_worker_loss"] == 1
    [resumed] = await platform.wait_job("job_lost1")
    assert resumed.status is DeploymentStatus.RUNNING, resumed.error
    assert resumed.attempts == 2
    await exhausted.refresh_from_db()
    assert exhausted.status is DeploymentStatus.FAILED
    assert "the worker stopped during this deploy 2 times" in (exhausted.error or "")


async def test_a_deploy_past_its_timeout_is_failed(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token, "shop", '[{name: "web", type: DOCKER, image: "digi-test-web:latest"}]'
    )
    row = await Deployment.create(
        service_id=int(service["id"]),
        component_id=int(service["components"][0]["id"]),
        job_id="job_slow",
        status=DeploymentStatus.DEPLOYING,
        attempts=1,
        claimed_by=platform.worker.deps.worker_id,
        started_at=datetime.now(UTC) - timedelta(hours=2),
    )
    repairs = await platform.worker.reconciler.reconcile()
    assert repairs["failed_overdue"] == 1
    await row.refresh_from_db()
    assert row.status is DeploymentStatus.FAILED and "DIGI_DEPLOY_TIMEOUT" in (row.error or "")


async def test_routes_lost_from_caddy_come_back_and_strangers_go(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    admin = platform.settings.caddy_admin_url
    routes = f"{admin}/config/apps/http/servers/digi/routes"
    async with aiohttp.ClientSession() as session:
        async with session.get(routes) as response:
            held = await response.json()
        stranger = {
            "@id": "hand-made",
            "match": [{"host": ["stranger.localhost"]}],
            "handle": [{"handler": "static_response", "body": "not Digi's"}],
        }
        # Drop Digi's route and put a hand-made one in its place.
        async with session.patch(routes, json=[stranger, held[-1]]) as response:
            assert response.status == 200
        await platform.expect(hostname(service, platform), 404)
        await platform.worker.reconciler.reconcile()
        async with session.get(routes) as response:
            ids = [route.get("@id") for route in await response.json()]
    assert "hand-made" not in ids
    await platform.expect(hostname(service, platform), 200, "hello from web")


async def test_a_job_lost_from_the_queue_is_enqueued_again(platform: Platform) -> None:
    """A flushed Redis (or a crash between the row and the enqueue) loses no deploy."""
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token, "shop", '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000}]'
    )
    row = await Deployment.create(
        service_id=int(service["id"]),
        component_id=int(service["components"][0]["id"]),
        job_id="job_never_enqueued",
    )
    await Deployment.filter(id=row.id).update(updated_at=datetime.now(UTC) - timedelta(minutes=1))
    await platform.worker.reconciler.reconcile()
    [done] = await platform.wait_job("job_never_enqueued")
    assert done.status is DeploymentStatus.RUNNING, done.error

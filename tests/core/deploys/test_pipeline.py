"""Deploys end to end: GraphQL -> queue -> worker -> Docker -> Caddy, on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import aiodocker

from digi_core import runtime
from digi_core.models import Deployment, DeploymentStatus, Service
from tests.core.api.conftest import GraphQLErrors
from tests.core.deploys.conftest import Platform, eventually

WEB = (
    '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000, '
    'healthcheckPath: "/health"}]'
)
STATUS = (
    "subscription($job: String!) { deploymentStatus(jobId: $job) { component status message } }"
)
ORDER = ["QUEUED", "BUILDING", "DEPLOYING", "RUNNING"]


def hostname(service: dict[str, Any], platform: Platform) -> str:
    url = service["components"][0]["url"]
    return str(url.split("://", 1)[1].split(":")[0].split("/")[0])


async def deployed(platform: Platform, token: str, name: str = "shop") -> dict[str, Any]:
    service = await platform.service(token, name, WEB)
    job = await platform.deploy(token, service["id"])
    rows = await platform.wait_job(job["jobId"])
    assert [row.status for row in rows] == [DeploymentStatus.RUNNING], rows[0].error
    return service


async def containers_of(slug: str) -> list[dict[str, Any]]:
    docker = aiodocker.Docker()
    try:
        label = {"label": [f"{runtime.LABEL_SERVICE}={slug}"]}
        return [c._container for c in await docker.containers.list(all=True, filters=label)]
    finally:
        await docker.close()


async def test_an_image_deploys_and_answers_through_caddy_with_events_in_order(
    platform: Platform,
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "shop", WEB)
    job = await platform.deploy(token, service["id"])
    assert job["deployments"][0]["status"] == "QUEUED"
    websocket = await platform.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": STATUS, "variables": {"job": job["jobId"]}},
        }
    )
    seen: list[str] = []
    # The subscription completes by itself once the job's deployments are all final.
    while (message := await websocket.receive_json(timeout=30))["type"] != "complete":
        status = message["payload"]["data"]["deploymentStatus"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
    assert seen[-1] == "RUNNING"
    # Whatever the subscription joined, what it saw moved forward through the lifecycle.
    assert seen == sorted(seen, key=ORDER.index)
    assert "DEPLOYING" in seen
    # Subscribing to a finished job gives where it ended, then completes.
    await websocket.send_json(
        {
            "id": "2",
            "type": "subscribe",
            "payload": {"query": STATUS, "variables": {"job": job["jobId"]}},
        }
    )
    message = await websocket.receive_json(timeout=10)
    assert message["payload"]["data"]["deploymentStatus"]["status"] == "RUNNING"
    assert (await websocket.receive_json(timeout=10))["type"] == "complete"
    await websocket.close()
    await platform.expect(hostname(service, platform), 200, "hello from web")
    containers = await containers_of(service["slug"])
    assert len(containers) == 1
    assert containers[0]["Labels"]["digi.component"] == "web"
    docker = aiodocker.Docker()
    try:
        details = await (await docker.containers.get(containers[0]["Id"])).show()
    finally:
        await docker.close()
    # The free plan's limits, an init, and Docker restarting it from now on.
    config = details["HostConfig"]
    assert (config["Memory"], config["NanoCpus"]) == (512 * 2**20, 500_000_000)
    assert config["Init"] is True and config["RestartPolicy"]["Name"] == "unless-stopped"
    assert "PORT=8000" in details["Config"]["Env"]
    row = await Service.get(id=int(service["id"]))
    assert row.status.value == "running"


async def test_a_redeploy_under_continuous_requests_drops_none(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    host = hostname(service, platform)
    results: list[tuple[int, str]] = []
    done = asyncio.Event()

    async def client() -> None:
        while not done.is_set():
            try:
                results.append(await platform.get(host))
            except Exception as error:  # a refused or reset connection counts as failed
                results.append((0, repr(error)))

    clients = [asyncio.create_task(client()) for _ in range(3)]
    await asyncio.sleep(0.3)
    job = await platform.deploy(token, service["id"])
    rows = await platform.wait_job(job["jobId"])

    async def old_one_gone() -> bool:  # after the drain (the router's settle time at least)
        containers = await containers_of(service["slug"])
        return [c["Labels"]["digi.deployment"] for c in containers] == [str(rows[0].id)]

    await eventually(old_one_gone, within=10, what="the old container stopped")
    await asyncio.sleep(0.3)  # requests after it stopped
    done.set()
    await asyncio.gather(*clients)
    assert rows[0].status is DeploymentStatus.RUNNING
    failed = [result for result in results if result[0] != 200]
    assert len(results) > 50 and failed == []
    statuses = await Deployment.filter(service_id=int(service["id"])).order_by("id")
    assert [row.status for row in statuses] == [
        DeploymentStatus.SUPERSEDED,
        DeploymentStatus.RUNNING,
    ]


async def test_a_failing_health_check_leaves_the_old_version_serving(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    # The new version never opens its port.
    await platform.gql(
        'mutation($id: ID!) { updateService(id: $id, components: [{name: "web", type: DOCKER, '
        'image: "digi-test-base:latest", port: 8000, startCommand: "echo starting; sleep 600"}]) '
        "{ id } }",
        {"id": service["id"]},
        token=token,
    )
    platform.settings.healthcheck_timeout = 2
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "no port 8000 open within 2 s" in (row.error or "")
    assert "starting" in (row.error or "")  # the last log lines tell why
    await platform.expect(hostname(service, platform), 200, "hello from web")
    containers = await containers_of(service["slug"])
    assert len(containers) == 1  # the failed one is gone, the old one stays


async def test_a_crashing_version_fails_with_its_exit_code_and_output(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token,
        "crash",
        '[{name: "web", type: DOCKER, image: "digi-test-base:latest", port: 8000, '
        'startCommand: "echo boom >&2; exit 3"}]',
    )
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "exited with code 3" in (row.error or "") and "boom" in (row.error or "")
    assert await containers_of(service["slug"]) == []
    assert (await Service.get(id=int(service["id"]))).status.value == "failed"


async def test_rollback_runs_the_earlier_image_even_after_its_tag_moved(
    platform: Platform, test_images: dict[str, str]
) -> None:
    _, token = await platform.user("owner@example.com")
    docker = aiodocker.Docker()
    try:  # a tag of the user's that will move, as :latest does
        await docker.images.tag("digi-test-web:latest", "digi-test-moving", tag="v")
        components = WEB.replace("digi-test-web:latest", "digi-test-moving:v")
        service = await platform.service(token, "shop", components)
        first = await platform.deploy(token, service["id"])
        await platform.wait_job(first["jobId"])
        await docker.images.tag(test_images["v2"], "digi-test-moving", tag="v")
    finally:
        await docker.close()
    second = await platform.deploy(token, service["id"])
    await platform.wait_job(second["jobId"])
    host = hostname(service, platform)
    await platform.expect(host, 200, "v2 from web")
    back = await platform.gql(
        "mutation($id: ID!) { rollbackDeployment(deploymentId: $id) "
        "{ jobId deployments { id rollbackOf status } } }",
        {"id": first["deployments"][0]["id"]},
        token=token,
    )
    [row] = await platform.wait_job(back["rollbackDeployment"]["jobId"])
    assert row.status is DeploymentStatus.RUNNING
    assert (
        back["rollbackDeployment"]["deployments"][0]["rollbackOf"] == first["deployments"][0]["id"]
    )
    await platform.expect(host, 200, "hello from web")
    # The same through deployService(rollbackTo:).
    again = await platform.deploy(token, service["id"], rollbackTo=second["deployments"][0]["id"])
    await platform.wait_job(again["jobId"])
    await platform.expect(host, 200, "v2 from web")


async def test_rollback_refuses_a_deployment_that_never_ran(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token,
        "crash",
        '[{name: "web", type: DOCKER, image: "digi-test-base:latest", startCommand: "exit 1"}]',
    )
    job = await platform.deploy(token, service["id"])
    await platform.wait_job(job["jobId"])
    try:
        await platform.deploy(token, service["id"], rollbackTo=job["deployments"][0]["id"])
    except GraphQLErrors as error:
        assert error.code == "BAD_USER_INPUT" and "never ran" in str(error)
    else:
        raise AssertionError("a rollback to a failed deployment was accepted")


async def test_cancel_stops_a_deploy_in_progress_and_keeps_the_old_one(
    platform: Platform,
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    await platform.gql(
        'mutation($id: ID!) { updateService(id: $id, components: [{name: "web", type: DOCKER, '
        'image: "digi-test-base:latest", port: 8000, startCommand: "sleep 600"}]) { id } }',
        {"id": service["id"]},
        token=token,
    )
    job = await platform.deploy(token, service["id"])
    await platform.wait_job(job["jobId"], until={DeploymentStatus.DEPLOYING})
    await eventually(lambda: _has_containers(service["slug"], 2), what="the new container started")
    answer = await platform.gql(
        "mutation($job: String!) { cancelDeployment(jobId: $job) { deployments { status } } }",
        {"job": job["jobId"]},
        token=token,
    )
    assert answer["cancelDeployment"]["deployments"] == [{"status": "CANCELLED"}]
    await eventually(lambda: _has_containers(service["slug"], 1), what="the new one removed")
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.CANCELLED
    await platform.expect(hostname(service, platform), 200, "hello from web")


async def _has_containers(slug: str, count: int) -> bool:
    return len(await containers_of(slug)) == count


async def test_a_missing_image_fails_with_what_to_do(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(
        token, "ghost", '[{name: "web", type: DOCKER, image: "127.0.0.1:9/nothing:here"}]'
    )
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "cannot be pulled" in (row.error or "")


async def test_deploy_input_is_checked_before_anything_is_queued(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    _, other = await platform.user("other@example.com")
    service = await platform.service(token, "shop", WEB)
    for arguments, code in [
        ({"only": ["../etc"]}, "BAD_USER_INPUT"),
        ({"only": ["db"]}, "NOT_FOUND"),
        ({"rollbackTo": "1; DROP TABLE deployments"}, "NOT_FOUND"),
    ]:
        try:
            await platform.deploy(token, service["id"], **arguments)
        except GraphQLErrors as error:
            assert error.code == code, (arguments, error.errors)
        else:
            raise AssertionError(f"{arguments} was accepted")
    try:
        await platform.deploy(other, service["id"])
    except GraphQLErrors as error:
        assert error.code == "NOT_FOUND"
    assert await Deployment.all().count() == 0

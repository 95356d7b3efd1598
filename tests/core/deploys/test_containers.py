"""A deployed service's containers through the API: live logs, stop, restart, delete."""

from __future__ import annotations

import json

import aiodocker

from digi_core.models import Deployment, DeploymentStatus, Role, Service
from digi_core.server.keys import LOG_FOLLOWERS
from tests.core.deploys.conftest import Platform, eventually
from tests.core.deploys.test_pipeline import WEB, containers_of, deployed, hostname

TICKER = (
    '[{name: "ticker", type: DOCKER, image: "digi-test-base:latest", '
    'startCommand: "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"}]'
)
LOGS = (
    "subscription($id: ID!, $c: String!, $tail: Int!) { containerLogs(serviceId: $id, "
    "containerId: $c, tail: $tail) { containerId stream line at } }"
)


async def test_logs_stream_live_through_the_subscription_and_no_follower_stays(
    platform: Platform,
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "clock", TICKER)
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.RUNNING, row.error
    followers = platform.client.app[LOG_FOLLOWERS]  # type: ignore[index]

    websocket = await platform.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    variables = {"id": service["id"], "c": "ticker", "tail": 3}
    await websocket.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": LOGS, "variables": variables}}
    )
    lines = []
    while len(lines) < 8:
        message = await websocket.receive_json(timeout=10)
        assert message["type"] == "next", message
        lines.append(message["payload"]["data"]["containerLogs"])
    numbers = [int(line["line"].split()[1]) for line in lines]
    # The tail, then live lines as the app prints them, in order and without gaps.
    assert numbers == list(range(numbers[0], numbers[0] + 8))
    assert {line["stream"] for line in lines} == {"stdout"}
    assert lines[0]["containerId"] == row.container_id
    assert followers.active_streams() == 1
    await websocket.close()
    await eventually(lambda: _no_streams(followers), within=10, what="the Docker log stream closed")


async def _no_streams(followers: object) -> bool:
    return followers.active_streams() == 0  # type: ignore[attr-defined,no-any-return]


async def test_stop_then_restart_a_container(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    host = hostname(service, platform)
    stop = 'mutation($id: ID!) { stopContainer(serviceId: $id, containerId: "web") }'
    restart = 'mutation($id: ID!) { restartContainer(serviceId: $id, containerId: "web") }'

    assert (await platform.gql(stop, {"id": service["id"]}, token=token))["stopContainer"]
    [container] = await containers_of(service["slug"])
    assert container["State"] == "exited"
    [row] = await Deployment.filter(service_id=int(service["id"]))
    assert row.status is DeploymentStatus.STOPPED
    assert (await Service.get(id=int(service["id"]))).status.value == "stopped"
    await platform.expect(host, 503, contains="This app is stopped")
    # The reconciler leaves a container stopped on purpose alone.
    await platform.worker.reconciler.reconcile()
    assert [c["State"] for c in await containers_of(service["slug"])] == ["exited"]

    assert (await platform.gql(restart, {"id": service["id"]}, token=token))["restartContainer"]
    await platform.expect(host, 200, "hello from web")
    await row.refresh_from_db()
    assert row.status is DeploymentStatus.RUNNING
    assert (await Service.get(id=int(service["id"]))).status.value == "running"


async def test_delete_removes_containers_network_and_volumes(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    docker = aiodocker.Docker()
    try:
        # A data volume of the service's (managed databases will make these).
        await docker.volumes.create(
            {"Name": f"digi-{service['slug']}-data", "Labels": {"digi.service": service["slug"]}}
        )
        answer = await platform.gql(
            'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
            {"id": service["id"]},
            token=token,
        )
        removed = answer["deleteService"]["removed"]
        assert "1 container(s)" in removed and "its network" in removed
        assert "1 deployed image(s)" in removed
        reference = json.dumps({"reference": [f"digi/{service['slug']}-*"]})
        assert await docker._query_json("images/json", params={"filters": reference}) == []
        assert f"volume digi-{service['slug']}-data" in removed
        assert await containers_of(service["slug"]) == []
        networks = await docker.networks.list(filters={"name": f"digi-{service['slug']}"})
        assert networks == []
        volumes = await docker.volumes.list(filters={"label": f"digi.service={service['slug']}"})
        assert not volumes.get("Volumes")
    finally:
        await docker.close()
    await platform.expect(hostname(service, platform), 404)


async def test_deleting_a_user_removes_what_their_services_ran(platform: Platform) -> None:
    _, admin = await platform.user("admin@example.com", role=Role.ADMIN)
    owner, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    _, other_token = await platform.user("other@example.com")
    kept = await deployed(platform, other_token, "blog")

    answer = await platform.gql(
        "mutation($id: ID!) { deleteUser(id: $id) }", {"id": str(owner.id)}, token=admin
    )
    assert "1 container(s)" in answer["deleteUser"] and "its network" in answer["deleteUser"]
    assert await containers_of(service["slug"]) == []
    assert (await Service.get(id=int(service["id"]))).deleted_at is not None
    await platform.expect(hostname(service, platform), 404)
    await platform.expect(hostname(kept, platform), 200, "hello from web")


async def test_a_second_service_is_untouched_by_the_first_ones_deletion(
    platform: Platform,
) -> None:
    _, token = await platform.user("owner@example.com")
    first = await deployed(platform, token, "shop")
    second = await deployed(platform, token, "blog")
    await platform.gql(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
        {"id": first["id"]},
        token=token,
    )
    await platform.expect(hostname(second, platform), 200, "hello from web")
    assert len(await containers_of(second["slug"])) == 1
    assert WEB  # the same component list made both

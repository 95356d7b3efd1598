"""The console's operations: platform counts, everyone's deployments and their live activity,
for admins only."""

from __future__ import annotations

import uuid

import pytest

from digi_core.models import Deployment, DeploymentStatus, Role
from tests.core.api.conftest import Api, GraphQLErrors

COUNTS = (
    "{ platformCounts { users suspendedUsers services failedServices runningDeployments "
    "activeDeployments failedDeployments } }"
)
RECENT = (
    "query($status: DeploymentStatus, $search: String) { recentDeployments(status: $status, "
    "search: $search) { totalCount items { serviceName ownerEmail deployment { component "
    "status } } } }"
)
ACTIVITY = (
    "subscription { deploymentActivity(everySeconds: 0.2) { serviceName ownerEmail "
    "deployment { id status message } } }"
)


async def service_with_deployment(
    api: Api, token: str, name: str, status: DeploymentStatus
) -> Deployment:
    created = (
        await api.gql(
            f'mutation {{ createService(name: "{name}", components: [{{name: "web", '
            'type: DOCKER, image: "nginx"}]) { id components { id } } }',
            token=token,
        )
    )["createService"]
    return await Deployment.create(
        service_id=int(created["id"]),
        component_id=int(created["components"][0]["id"]),
        job_id=f"job-{uuid.uuid4().hex}",
        status=status,
    )


async def test_counts_and_recent_deployments_of_every_user(api: Api) -> None:
    _, admin = await api.user("admin@example.com", role=Role.ADMIN)
    _, alice = await api.user("alice@example.com")
    _, bob = await api.user("bob@example.com")
    await service_with_deployment(api, alice, "shop", DeploymentStatus.RUNNING)
    await service_with_deployment(api, bob, "blog", DeploymentStatus.FAILED)
    await service_with_deployment(api, bob, "wiki", DeploymentStatus.BUILDING)

    counts = (await api.gql(COUNTS, token=admin))["platformCounts"]
    assert counts == {
        "users": 3,
        "suspendedUsers": 0,
        "services": 3,
        "failedServices": 0,  # the service rows were never deployed by the pipeline
        "runningDeployments": 1,
        "activeDeployments": 1,
        "failedDeployments": 1,
    }
    everyone = (await api.gql(RECENT, token=admin))["recentDeployments"]
    assert everyone["totalCount"] == 3
    assert [item["serviceName"] for item in everyone["items"]] == ["wiki", "blog", "shop"]
    of_bob = (await api.gql(RECENT, {"search": "bob@"}, token=admin))["recentDeployments"]
    assert {item["serviceName"] for item in of_bob["items"]} == {"blog", "wiki"}
    failed = (await api.gql(RECENT, {"status": "FAILED"}, token=admin))["recentDeployments"]
    assert [(i["ownerEmail"], i["deployment"]["status"]) for i in failed["items"]] == [
        ("bob@example.com", "FAILED")
    ]


@pytest.mark.parametrize("document", [COUNTS, RECENT])
async def test_only_admins_may_ask(api: Api, document: str) -> None:
    _, token = await api.user("user@example.com")
    with pytest.raises(GraphQLErrors) as refused:
        await api.gql(document, token=token)
    assert refused.value.code == "FORBIDDEN"


async def test_activity_streams_changes_of_every_users_deployments(api: Api) -> None:
    _, admin = await api.user("admin@example.com", role=Role.ADMIN)
    _, alice = await api.user("alice@example.com")
    row = await service_with_deployment(api, alice, "shop", DeploymentStatus.QUEUED)
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": admin}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {"id": "a", "type": "subscribe", "payload": {"query": ACTIVITY, "variables": {}}}
    )
    # The subscription starts from now: the first poll's overlap may resend the row as it is.
    for status in (DeploymentStatus.BUILDING, DeploymentStatus.RUNNING):
        row.status = status
        row.message = f"now {status.value}"
        await row.save()
        while True:
            message = await websocket.receive_json(timeout=10)
            assert message["type"] == "next", message
            seen = message["payload"]["data"]["deploymentActivity"]
            if seen["deployment"]["status"] == status.name:
                break
        assert seen["serviceName"] == "shop"
        assert seen["ownerEmail"] == "alice@example.com"
        assert seen["deployment"] == {
            "id": str(row.id),
            "status": status.name,
            "message": f"now {status.value}",
        }
    await websocket.close()


async def test_activity_refuses_users(api: Api) -> None:
    _, token = await api.user("user@example.com")
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {"id": "a", "type": "subscribe", "payload": {"query": ACTIVITY, "variables": {}}}
    )
    message = await websocket.receive_json(timeout=10)
    assert message["type"] in {"error", "next"}, message
    payload = message["payload"]
    errors = payload if message["type"] == "error" else payload["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    await websocket.close()

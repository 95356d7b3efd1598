"""The console's operations: platform counts, everyone's deployments and their live activity
(pushed through the event bus, from this process or a worker's), for admins only."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from digi_core.deploys.shared import publish
from digi_core.events import EventBus
from digi_core.models import Deployment, DeploymentStatus, Role
from digi_core.server.keys import EVENT_BUS
from tests.conftest import TEST_SECRET
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
    "subscription { deploymentActivity { serviceName ownerEmail deployment { id status "
    "message } } }"
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


async def activity(api: Api, token: str) -> aiohttp.ClientWebSocketResponse:
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {"id": "a", "type": "subscribe", "payload": {"query": ACTIVITY, "variables": {}}}
    )
    return websocket


async def next_activity(websocket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await websocket.receive_json(timeout=10)
    assert message["type"] == "next", message
    seen: dict[str, Any] = message["payload"]["data"]["deploymentActivity"]
    return seen


async def moved(bus: EventBus, row: Deployment, status: DeploymentStatus) -> None:
    """What a deploy worker does: write the row, then publish it."""
    row.status, row.message = status, f"now {status.value}"
    await row.save()
    await publish(bus, row, "web")


async def test_activity_sends_what_is_in_progress_then_each_change_at_once(api: Api) -> None:
    _, admin = await api.user("admin@example.com", role=Role.ADMIN)
    _, alice = await api.user("alice@example.com")
    queued = await service_with_deployment(api, alice, "shop", DeploymentStatus.QUEUED)
    running = await service_with_deployment(api, alice, "blog", DeploymentStatus.RUNNING)
    bus = api.client.app[EVENT_BUS]  # a RedisBus on postgres+redis: through Redis
    websocket = await activity(api, admin)
    first = await next_activity(websocket)  # in progress now: the queued one, not the running
    assert (first["serviceName"], first["ownerEmail"]) == ("shop", "alice@example.com")
    assert first["deployment"] == {"id": str(queued.id), "status": "QUEUED", "message": ""}
    for status in (DeploymentStatus.BUILDING, DeploymentStatus.RUNNING):
        started = time.monotonic()
        await moved(bus, queued, status)
        seen = await next_activity(websocket)
        # Pushed, not polled: no interval to wait for.
        assert time.monotonic() - started < 0.5
        assert seen["serviceName"] == "shop"
        assert seen["deployment"] == {
            "id": str(queued.id),
            "status": status.name,
            "message": f"now {status.value}",
        }
    # Neither a build's output line, nor an event of a row unchanged since it was sent, nor
    # one of a row that is gone is sent: the next message is blog's change.
    await publish(bus, queued, "web", "Step 3/7 : RUN make")
    await publish(bus, queued, "web")
    gone = await service_with_deployment(api, alice, "wiki", DeploymentStatus.QUEUED)
    await gone.delete()
    await publish(bus, gone, "web")
    await moved(bus, running, DeploymentStatus.STOPPED)
    seen = await next_activity(websocket)
    assert (seen["serviceName"], seen["deployment"]["status"]) == ("blog", "STOPPED")
    await websocket.close()


PUBLISH_ELSEWHERE = """
import asyncio, sys
import redis.asyncio as redis
from digi_core.config import load_settings
from digi_core.db import close_database, open_database
from digi_core.deploys.shared import publish
from digi_core.events import RedisBus
from digi_core.models import Deployment, DeploymentStatus

async def main() -> None:
    settings = load_settings()
    await open_database(settings)
    client = redis.Redis.from_url(settings.redis_url)
    bus = RedisBus(client, settings.redis_prefix)
    row = await Deployment.get(id=int(sys.argv[1]))
    row.status, row.message = DeploymentStatus.BUILDING, "built elsewhere"
    await row.save()
    await publish(bus, row, "web")
    await bus.close()
    await client.aclose()
    await close_database()

asyncio.run(main())
"""


# Only with Redis: without it, deploys run in the API's own process.
@pytest.mark.parametrize("api", ["postgres+redis"], indirect=True)
async def test_activity_sees_what_a_worker_process_publishes(
    api: Api, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    _, admin = await api.user("admin@example.com", role=Role.ADMIN)
    _, alice = await api.user("alice@example.com")
    row = await service_with_deployment(api, alice, "shop", DeploymentStatus.QUEUED)
    websocket = await activity(api, admin)
    assert (await next_activity(websocket))["deployment"]["status"] == "QUEUED"  # subscribed
    settings = api.settings
    env = subprocess_env | {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": str(settings.redis_url),
        "DIGI_REDIS_PREFIX": settings.redis_prefix,
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": str(tmp_path / "worker"),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISH_ELSEWHERE,
        str(row.id),
        env=env,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0, stderr.decode()
    seen = await next_activity(websocket)
    assert seen["deployment"] == {
        "id": str(row.id),
        "status": "BUILDING",
        "message": "built elsewhere",
    }
    await websocket.close()


async def test_activity_refuses_users(api: Api) -> None:
    _, token = await api.user("user@example.com")
    websocket = await activity(api, token)
    message = await websocket.receive_json(timeout=10)
    assert message["type"] in {"error", "next"}, message
    payload = message["payload"]
    errors = payload if message["type"] == "error" else payload["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    await websocket.close()

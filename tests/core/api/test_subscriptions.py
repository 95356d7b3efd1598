"""Subscriptions over graphql-transport-ws and graphql-ws: authenticated, live, and leaving
nothing subscribed behind."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as redis

from digi_core.events import RedisBus
from digi_core.models import Deployment, DeploymentStatus
from digi_core.server.keys import EVENT_BUS
from tests.conftest import REDIS_URL
from tests.core.api.conftest import Api

STATUS = (
    "subscription($job: String!) { deploymentStatus(jobId: $job) { component status message } }"
)


async def deployment_job(api: Api, token: str) -> str:
    created = (
        await api.gql(
            'mutation { createService(name: "shop", components: [{name: "web", type: DOCKER, '
            'image: "nginx"}]) { id components { id } } }',
            token=token,
        )
    )["createService"]
    job_id = f"job-{uuid.uuid4().hex}"
    await Deployment.create(
        service_id=int(created["id"]),
        component_id=int(created["components"][0]["id"]),
        job_id=job_id,
        message="waiting for a worker",
    )
    return job_id


async def subscribe(api: Api, token: str, job_id: str) -> aiohttp.ClientWebSocketResponse:
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {
            "id": "s1",
            "type": "subscribe",
            "payload": {"query": STATUS, "variables": {"job": job_id}},
        }
    )
    return websocket


def event(job_id: str, status: DeploymentStatus, message: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "deployment_id": 1,
        "component": "web",
        "status": status.value,
        "message": message,
        "at": datetime.now(UTC).isoformat(),
    }


async def test_status_events_arrive_in_order_after_the_current_state(api: Api) -> None:
    _, token = await api.user("owner@example.com")
    job_id = await deployment_job(api, token)
    websocket = await subscribe(api, token, job_id)
    first = await websocket.receive_json(timeout=10)
    assert first["payload"]["data"]["deploymentStatus"] == {
        "component": "web",
        "status": "QUEUED",
        "message": "waiting for a worker",
    }
    # Another API process publishes (on Redis), or this one (in-process).
    if api.backend == "postgres+redis":
        client = redis.Redis.from_url(REDIS_URL)
        publisher: Any = RedisBus(client, api.settings.redis_prefix)
    else:
        client, publisher = None, api.client.app[EVENT_BUS]
    for status, message in (
        (DeploymentStatus.BUILDING, "building web"),
        (DeploymentStatus.DEPLOYING, "starting web"),
        (DeploymentStatus.RUNNING, "web answers"),
    ):
        await publisher.publish(f"deployment:{job_id}", event(job_id, status, message))
    received = [
        (await websocket.receive_json(timeout=10))["payload"]["data"]["deploymentStatus"]
        for _ in range(3)
    ]
    assert [(item["status"], item["message"]) for item in received] == [
        ("BUILDING", "building web"),
        ("DEPLOYING", "starting web"),
        ("RUNNING", "web answers"),
    ]
    await websocket.close()
    if client is not None:
        await publisher.close()
        await client.aclose()


async def test_a_subscriber_that_leaves_leaves_nothing_subscribed(api: Api) -> None:
    _, token = await api.user("owner@example.com")
    job_id = await deployment_job(api, token)
    websocket = await subscribe(api, token, job_id)
    await websocket.receive_json(timeout=10)  # the current state: the subscription is live
    if api.backend == "postgres+redis":
        client = redis.Redis.from_url(REDIS_URL)
        channel = f"{api.settings.redis_prefix}deployment:{job_id}"
        assert (await client.pubsub_numsub(channel))[0][1] == 1
        await websocket.close()  # the client just goes away, without "complete"
        for _ in range(50):
            if (await client.pubsub_numsub(channel))[0][1] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await client.pubsub_numsub(channel))[0][1] == 0
        await client.aclose()
    else:
        bus = api.client.app[EVENT_BUS]
        await websocket.close()
        for _ in range(50):
            if not bus._subscriptions:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        assert not bus._subscriptions  # type: ignore[attr-defined]


async def test_legacy_graphql_ws_protocol(api: Api) -> None:
    _, token = await api.user("owner@example.com")
    job_id = await deployment_job(api, token)
    websocket = await api.websocket("graphql-ws")
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {"id": "1", "type": "start", "payload": {"query": STATUS, "variables": {"job": job_id}}}
    )
    data = await websocket.receive_json(timeout=10)
    while data["type"] == "ka":  # the legacy protocol's keep-alives come in between
        data = await websocket.receive_json(timeout=10)
    assert data["type"] == "data"
    assert data["payload"]["data"]["deploymentStatus"]["status"] == "QUEUED"
    await websocket.close()

    refused = await api.websocket("graphql-ws")
    await refused.send_json({"type": "connection_init", "payload": {"token": "digi_forged"}})
    answer = await refused.receive_json(timeout=10)
    assert answer["type"] == "connection_error"
    assert answer["payload"]["code"] == "UNAUTHENTICATED"
    await refused.close()


async def test_a_bad_token_is_closed_with_4403(api: Api) -> None:
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": "digi_forged"}})
    message = await websocket.receive(timeout=10)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert websocket.close_code == 4403

"""Deploys from Git: real repositories served by `git daemon` on loopback, built with their
Dockerfile by the engine, on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

from digi_core.models import DeploymentStatus
from tests.core.deploys.conftest import Platform, Repositories
from tests.core.deploys.test_pipeline import STATUS, hostname

DOCKERFILE = """\
FROM digi-test-web:latest
COPY index.html /www/index.html
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""


def component(url: str, **more: str) -> str:
    extra = "".join(f', {key}: "{value}"' for key, value in more.items())
    return (
        f'[{{name: "web", type: GITHUB, repoUrl: "{url}", branch: "main", port: 8000, '
        f'healthcheckPath: "/health"{extra}}}]'
    )


async def deploy_repository(
    platform: Platform, repositories: Repositories, dockerfile: str = DOCKERFILE
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A new repository "app" built by ``dockerfile``, its service "shop" of a new owner, and
    a deploy of it asked for: the owner's token, the service and the job."""
    repositories.make("app", {"Dockerfile": dockerfile, "index.html": "v1\n"})
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "shop", component(repositories.url("app")))
    return token, service, await platform.deploy(token, service["id"])


async def test_a_repository_is_cloned_built_and_served_with_its_commit(
    platform: Platform, repositories: Repositories
) -> None:
    first = repositories.make("app", {"Dockerfile": DOCKERFILE, "index.html": "v1\n"})
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "shop", component(repositories.url("app")))
    job = await platform.deploy(token, service["id"])
    messages = await statuses(platform, token, job["jobId"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.RUNNING, row.error
    assert row.commit_sha == first
    await platform.expect(hostname(service, platform), 200, "v1")
    # The build's own output arrived live, while the deployment was building.
    assert any(
        status == "BUILDING" and message.startswith("Step 1/3 : FROM")
        for status, message in messages
    )

    # A second build of the same commit reuses every layer.
    again = await platform.deploy(token, service["id"])
    messages = await statuses(platform, token, again["jobId"])
    assert messages[-1] == ("RUNNING", "running")
    assert any(
        "built" in message and "2 of 2 steps from the cache" in message for _, message in messages
    )


async def statuses(platform: Platform, token: str, job_id: str) -> list[tuple[str, str]]:
    """Every (status, message) the job's subscription gives until it completes."""
    websocket = await platform.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": STATUS, "variables": {"job": job_id}}}
    )
    seen = []
    while (message := await websocket.receive_json(timeout=60))["type"] != "complete":
        event: dict[str, Any] = message["payload"]["data"]["deploymentStatus"]
        seen.append((event["status"], event["message"]))
    await websocket.close()
    return seen


async def test_a_commit_pins_the_source_and_the_branch_tip_moves(
    platform: Platform, repositories: Repositories
) -> None:
    first = repositories.make("app", {"Dockerfile": DOCKERFILE, "index.html": "v1\n"})
    repositories.commit("app", {"index.html": "v2\n"})
    _, token = await platform.user("owner@example.com")
    pinned = await platform.service(
        token, "pinned", component(repositories.url("app"), commit=first)
    )
    tip = await platform.service(token, "tip", component(repositories.url("app")))
    for service, answer in ((pinned, "v1"), (tip, "v2")):
        job = await platform.deploy(token, service["id"])
        [row] = await platform.wait_job(job["jobId"])
        assert row.status is DeploymentStatus.RUNNING, row.error
        await platform.expect(hostname(service, platform), 200, answer)


async def test_no_dockerfile_and_no_railpack_fails_saying_what_to_add(
    platform: Platform, repositories: Repositories
) -> None:
    repositories.make("bare", {"index.html": "no recipe\n"})
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "bare", component(repositories.url("bare")))
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "there is no Dockerfile in the repository's root" in (row.error or "")
    assert "add a Dockerfile to the repository's root, or install railpack" in (row.error or "")


async def test_a_failing_build_or_clone_fails_and_the_old_version_keeps_serving(
    platform: Platform, repositories: Repositories
) -> None:
    token, service, job = await deploy_repository(platform, repositories)
    await platform.wait_job(job["jobId"])
    repositories.commit("app", {"Dockerfile": DOCKERFILE + "RUN echo broken step; exit 7\n"})
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "the build failed" in (row.error or "") and "7" in (row.error or "")
    await platform.expect(hostname(service, platform), 200, "v1")

    gone = await platform.service(token, "gone", component(repositories.url("missing")))
    job = await platform.deploy(token, gone["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED
    assert "git clone failed" in (row.error or "")
    await asyncio.sleep(0)

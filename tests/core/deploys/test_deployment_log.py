"""A deployment's log: every step and line of build output kept in order, read back through
`deploymentLog` by its owner and admins only, capped per deployment and pruned per component."""

from __future__ import annotations

import asyncio
from typing import Any

from digi_core.cli.client import ApiClient
from digi_core.cli.user.deployment_log import DeploymentLog
from digi_core.config import Settings
from digi_core.deploys.deployment_log import BuildOutput, prune_logs
from digi_core.deploys.shared import channel
from digi_core.events import MemoryBus
from digi_core.models import (
    Component,
    ComponentType,
    Deployment,
    DeploymentLogLine,
    DeploymentStatus,
    Role,
    Service,
    User,
)
from tests.core.api.conftest import GraphQLErrors
from tests.core.deploys.conftest import Platform, Repositories, eventually
from tests.core.deploys.test_git import DOCKERFILE, deploy_repository, statuses

LOG = """query($id: ID!, $after: ID, $limit: Int!) {
  deploymentLog(deploymentId: $id, after: $after, limit: $limit) {
    deployment { id status }
    lines { id at status line }
    hasMore
  }
}"""


async def read_log(
    platform: Platform, token: str, deployment_id: str, limit: int = 5000
) -> list[dict[str, Any]]:
    """Every line, page after page."""
    lines: list[dict[str, Any]] = []
    after = None
    while True:
        variables = {"id": deployment_id, "after": after, "limit": limit}
        page = (await platform.gql(LOG, variables, token=token))["deploymentLog"]
        lines += page["lines"]
        if not page["hasMore"]:
            return lines
        after = page["lines"][-1]["id"]


def in_order(wanted: list[tuple[str, str]], log: list[tuple[str, str]]) -> bool:
    """``wanted`` is found in ``log``, in the same order (other lines may come between)."""
    remaining = iter(log)
    return all(any(item == entry for entry in remaining) for item in wanted)


async def test_a_builds_steps_and_output_are_kept_in_the_order_they_went_live(
    platform: Platform, repositories: Repositories
) -> None:
    token, _, job = await deploy_repository(platform, repositories)
    live = await statuses(platform, token, job["jobId"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.RUNNING, row.error

    lines = await read_log(platform, token, str(row.id))
    log = [(line["status"], line["line"]) for line in lines]
    assert log[0] == ("QUEUED", "queued") and log[-1] == ("RUNNING", "running")
    # All the subscriber saw (after the state it was sent on subscribing), in its order.
    assert in_order(live[1:], log), (live, log)
    assert any(text.startswith("Step 1/3 : FROM") for _, text in log)
    times = [line["at"] for line in lines]
    assert times == sorted(times)
    # Pages of 3 give the same lines.
    assert await read_log(platform, token, str(row.id), limit=3) == lines


async def test_a_reader_who_arrives_mid_build_gets_every_line_once(
    platform: Platform, repositories: Repositories
) -> None:
    """`DeploymentLog` (the CLI's and the console's reader): the kept lines, then live ones,
    meeting without a gap or a repeat, though output is written and sent in batches."""
    slow = DOCKERFILE + 'RUN for i in $(seq 1 60); do echo "counting $i"; sleep 0.05; done\n'
    token, _, job = await deploy_repository(platform, repositories, slow)
    deployment_id = job["deployments"][0]["id"]
    await eventually(
        lambda: DeploymentLogLine.filter(
            deployment_id=int(deployment_id), line="counting 5"
        ).exists(),
        what="the build counting",
    )
    api_url = str(platform.client.make_url("")).rstrip("/")
    async with ApiClient(api_url, token, "the test") as client:
        reader = DeploymentLog(client, deployment_id)
        read = [line async for line in reader.lines()]
        assert reader.deployment["status"] == "RUNNING"
        live_from = next(index for index, line in enumerate(read) if "id" not in line)
    kept = await read_log(platform, token, deployment_id)
    assert [(line["status"], line["line"]) for line in read] == [
        (line["status"], line["line"]) for line in kept
    ]
    # It arrived while the build counted: the rest came live.
    assert "counting 60" in [line["line"] for line in read[live_from:]]


async def test_a_failed_builds_log_keeps_its_output_and_why(
    platform: Platform, repositories: Repositories
) -> None:
    broken = DOCKERFILE + "RUN echo the broken step runs; exit 7\n"
    token, _, job = await deploy_repository(platform, repositories, broken)
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED

    log = [(line["status"], line["line"]) for line in await read_log(platform, token, str(row.id))]
    assert ("BUILDING", "the broken step runs") in log
    assert log[-1][0] == "FAILED"


async def test_only_the_owner_and_admins_read_a_deployments_log(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    _, other = await platform.user("other@example.com")
    _, admin = await platform.user("admin@example.com", role=Role.ADMIN)
    service = await platform.service(
        token, "shop", '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000}]'
    )
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    mine = await read_log(platform, token, str(row.id))
    assert mine and await read_log(platform, admin, str(row.id)) == mine

    for deployment_id in (str(row.id), "999999", "not-a-number"):
        try:
            await read_log(platform, other, deployment_id)
        except GraphQLErrors as refused:
            assert refused.code == "NOT_FOUND"
        else:
            raise AssertionError("another user read the log")
    for limit in (0, 5001):
        try:
            await read_log(platform, token, str(row.id), limit=limit)
        except GraphQLErrors as refused:
            assert refused.code == "BAD_USER_INPUT"
        else:
            raise AssertionError(f"limit {limit} was taken")


async def _deployment(name: str) -> Deployment:
    owner = await User.create(email=f"{name}@example.com", name=name, password_hash="x")
    service = await Service.create(owner=owner, name=name, slug=f"{name}-0123456789ab")
    web = await Component.create(
        service=service, name="web", type=ComponentType.DOCKER, subdomain=service.slug
    )
    return await Deployment.create(
        service=service, component=web, job_id=f"job-{name}", status=DeploymentStatus.BUILDING
    )


async def test_build_output_beyond_the_limit_goes_live_but_not_into_the_log(
    migrated: Settings,
) -> None:
    row = await _deployment("capped")
    bus = MemoryBus()
    async with bus.subscribe(channel(row.job_id)) as events:
        async with BuildOutput(bus, row, "web", max_lines=5) as output:
            for number in range(12):
                await output.line(f"line {number}")
            # Nothing is lost to a flush that is still waiting when the build ends.
        published = []
        for _ in range(13):
            published.append((await asyncio.wait_for(anext(events), 5))["message"])
    kept = await DeploymentLogLine.filter(deployment_id=row.id).order_by("id")
    assert [line.line for line in kept[:5]] == [f"line {n}" for n in range(5)]
    assert kept[5].line == "… 7 more line(s) of output were not kept (DIGI_DEPLOY_LOG_LINES=5)"
    assert len(kept) == 6
    assert published == [f"line {n}" for n in range(12)] + [kept[5].line]


async def test_a_resumed_build_counts_what_its_first_attempt_kept(migrated: Settings) -> None:
    row = await _deployment("resumed")
    bus = MemoryBus()
    async with BuildOutput(bus, row, "web", max_lines=4) as first:
        for number in range(3):
            await first.line(f"first {number}")
    async with BuildOutput(bus, row, "web", max_lines=4) as second:
        for number in range(3):
            await second.line(f"second {number}")
    kept = [line.line for line in await DeploymentLogLine.filter(deployment_id=row.id)]
    assert kept[:4] == ["first 0", "first 1", "first 2", "second 0"]
    assert "2 more line(s)" in kept[4]


async def test_only_the_newest_deployments_of_a_component_keep_their_logs(
    migrated: Settings,
) -> None:
    first = await _deployment("pruned")
    rows = [first] + [
        await Deployment.create(
            service_id=first.service_id,  # type: ignore[attr-defined]
            component_id=first.component_id,  # type: ignore[attr-defined]
            job_id=f"job-{number}",
        )
        for number in range(4)
    ]
    bus = MemoryBus()
    for row in rows:
        async with BuildOutput(bus, row, "web", max_lines=100) as output:
            await output.line(f"built by {row.id}")
    other = await _deployment("other")
    async with BuildOutput(bus, other, "web", max_lines=100) as output:
        await output.line("another component's")

    assert await prune_logs(first.component_id, keep=2) == 3  # type: ignore[attr-defined]
    left = await DeploymentLogLine.all().order_by("id").values_list("line", flat=True)
    assert left == [f"built by {rows[3].id}", f"built by {rows[4].id}", "another component's"]
    assert await prune_logs(first.component_id, keep=2) == 0  # type: ignore[attr-defined]

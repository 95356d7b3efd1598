"""Containers on the real Docker engine, through the local compute provider's Host."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from digi_core import runtime
from digi_core.providers import Host
from tests.core.conftest import new_slug


async def test_container_runs_labelled_on_its_service_network(host: Host) -> None:
    slug = new_slug(host, "rt")
    spec = runtime.ContainerSpec(slug, "web", 1, "digi-test-web:latest", env={"COMPONENT": "web"})
    container_id = await runtime.run_container(host, spec)
    await runtime.wait_healthy(
        host, container_id, slug, port=8000, path="/health", timeout_seconds=20
    )
    details = await (await host.docker.containers.get(container_id)).show()
    assert details["Config"]["Labels"] == {
        "digi.managed": "true",
        "digi.service": slug,
        "digi.component": "web",
        "digi.deployment": "1",
        "digi.installation": "",
    }
    assert details["HostConfig"]["Init"] is True
    # Restarted by Docker only once it proved healthy.
    assert details["HostConfig"]["RestartPolicy"]["Name"] == "no"
    await runtime.keep_running(host, container_id)
    details = await (await host.docker.containers.get(container_id)).show()
    assert details["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    address = await runtime.address_on_network(host, container_id, slug)
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}:8000/") as page:
        assert await page.text() == "hello from web\n"
    assert [c["Id"] for c in await runtime.managed_containers(host, slug)] == [container_id]


async def test_components_reach_each_other_by_name(host: Host) -> None:
    slug = new_slug(host, "rt")
    api = await runtime.run_container(
        host,
        runtime.ContainerSpec(slug, "api", 1, "digi-test-web:latest", env={"COMPONENT": "api"}),
    )
    await runtime.wait_healthy(host, api, slug, port=8000, path=None, timeout_seconds=20)
    client = await runtime.run_container(
        host,
        runtime.ContainerSpec(
            slug,
            "client",
            2,
            "digi-test-web:latest",
            command=["sh", "-c", "wget -qO- http://api:8000/ && sleep 60"],
        ),
    )
    for _ in range(50):
        logs = await (await host.docker.containers.get(client)).log(stdout=True, stderr=True)
        if "hello from api" in "".join(logs):
            break
        await asyncio.sleep(0.1)
    assert "hello from api" in "".join(logs)


async def test_a_failing_health_check_reports_the_last_output(host: Host) -> None:
    slug = new_slug(host, "rt")
    container_id = await runtime.run_container(
        host,
        runtime.ContainerSpec(
            slug,
            "web",
            1,
            "digi-test-web:latest",
            command=["sh", "-c", "echo booting slowly; sleep 60"],
        ),
    )
    with pytest.raises(
        runtime.RuntimeFailure, match=r"(?s)no port 8000 open within 1 s.*booting slowly"
    ):
        await runtime.wait_healthy(
            host, container_id, slug, port=8000, path=None, timeout_seconds=1
        )


async def test_a_crashing_container_fails_at_once(host: Host) -> None:
    slug = new_slug(host, "rt")
    container_id = await runtime.run_container(
        host,
        runtime.ContainerSpec(
            slug, "web", 1, "digi-test-web:latest", command=["sh", "-c", "echo boom; exit 3"]
        ),
    )
    started = time.monotonic()
    with pytest.raises(runtime.RuntimeFailure) as caught:
        await runtime.wait_healthy(
            host, container_id, slug, port=8000, path=None, timeout_seconds=30
        )
    assert time.monotonic() - started < 10
    assert "boom" in str(caught.value)


async def test_a_missing_image_is_a_clear_error(host: Host) -> None:
    slug = new_slug(host, "rt")
    with pytest.raises(runtime.RuntimeFailure, match="is not on the host"):
        await runtime.run_container(
            host, runtime.ContainerSpec(slug, "web", 1, "digi-no-such-image:1")
        )


async def test_stop_is_fast_thanks_to_the_init(host: Host) -> None:
    """busybox httpd as PID 1 ignores SIGTERM; the init makes the stop immediate."""
    slug = new_slug(host, "rt")
    container_id = await runtime.run_container(
        host, runtime.ContainerSpec(slug, "web", 1, "digi-test-web:latest", stop_timeout_seconds=10)
    )
    await runtime.wait_healthy(host, container_id, slug, port=8000, path=None, timeout_seconds=20)
    started = time.monotonic()
    await runtime.stop_and_remove(host, container_id)
    assert time.monotonic() - started < 5
    assert await runtime.managed_containers(host, slug) == []
    await runtime.stop_and_remove(host, container_id)  # again: a missing one is fine

"""A Host on this machine's Docker engine for the runtime and log tests, cleaned up after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from digi_core import runtime
from digi_core.config import load_settings
from digi_core.providers import Host
from digi_local.compute import LocalCompute
from tests.conftest import TEST_SECRET


@pytest.fixture
async def host(tmp_path: Path, docker_images: dict[str, str]) -> AsyncIterator[Host]:
    settings = load_settings(DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=tmp_path / "data")
    compute = LocalCompute()
    await compute.start(settings)
    host = await compute.host_for_service(None, _no_log)  # type: ignore[arg-type]
    slugs: list[str] = []
    host.test_slugs = slugs  # type: ignore[attr-defined]
    yield host
    for slug in slugs:  # clean up what the test ran
        for container in await runtime.managed_containers(host, slug):
            await runtime.stop_and_remove(host, str(container["Id"]))
        network = await host.docker.networks.get(runtime.network_name(slug))
        await network.delete()
    await compute.close()


async def _no_log(line: str) -> None:
    return None


def new_slug(host: Host, prefix: str) -> str:
    """A service slug of the test's own, whose containers and network the fixture removes."""
    slug = f"{prefix}-{uuid.uuid4().hex[:12]}"
    host.test_slugs.append(slug)  # type: ignore[attr-defined]
    return slug

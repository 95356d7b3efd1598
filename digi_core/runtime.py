"""Containers on a host: a network per service, labelled containers, health checks, stops.

Everything goes through the Host's Docker API client, so a host reached over SSH works the
same as the local engine. Container and network names derive from validated slugs and
component names only: nothing a user typed reaches Docker unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp

from digi_core.providers import Host

log = logging.getLogger(__name__)

LABEL_MANAGED = "digi.managed"
LABEL_SERVICE = "digi.service"
LABEL_COMPONENT = "digi.component"
LABEL_DEPLOYMENT = "digi.deployment"
HEALTH_POLL_SECONDS = 0.2
LAST_LOG_LINES = 20


class RuntimeFailure(Exception):
    """A container did not start or did not become healthy; the message says why."""


def network_name(service_slug: str) -> str:
    return f"digi-{service_slug}"


def container_name(service_slug: str, component: str, deployment_id: int) -> str:
    return f"digi-{service_slug}-{component}-{deployment_id}"


@dataclass
class ContainerSpec:
    """One component's container, as the pipeline wants it run."""

    service_slug: str
    component: str
    deployment_id: int
    image: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    stop_timeout_seconds: int = 5


async def ensure_network(host: Host, service_slug: str) -> str:
    """The service's own bridge network, created once; components find each other by name."""
    name = network_name(service_slug)
    for network in await host.docker.networks.list(filters={"name": name}):
        if network["Name"] == name:
            return name
    try:
        await host.docker.networks.create(
            {
                "Name": name,
                "Driver": "bridge",
                "CheckDuplicate": True,
                "Labels": {LABEL_MANAGED: "true", LABEL_SERVICE: service_slug},
            }
        )
    except aiodocker.DockerError as error:
        if error.status != 409:  # created meanwhile by another worker: fine
            raise
    return name


async def run_container(host: Host, spec: ContainerSpec) -> str:
    """Create and start the container on the service's network; answer its id."""
    network = await ensure_network(host, spec.service_slug)
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": {
            LABEL_MANAGED: "true",
            LABEL_SERVICE: spec.service_slug,
            LABEL_COMPONENT: spec.component,
            LABEL_DEPLOYMENT: str(spec.deployment_id),
        },
        "StopTimeout": spec.stop_timeout_seconds,
        "HostConfig": {
            # An init as PID 1 forwards SIGTERM, so a stop never waits out the whole timeout.
            "Init": True,
            "RestartPolicy": {"Name": "unless-stopped"},
            "NetworkMode": network,
            "Memory": spec.memory_bytes or 0,
            "NanoCpus": spec.nano_cpus or 0,
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [spec.component]}}},
    }
    if spec.command:
        config["Cmd"] = spec.command
    name = container_name(spec.service_slug, spec.component, spec.deployment_id)
    try:
        container = await host.docker.containers.create(config, name=name)
    except aiodocker.DockerError as error:
        if error.status == 404:
            raise RuntimeFailure(
                f"image {spec.image} is not on the host and cannot be pulled: "
                "check its name and tag, or build it first"
            ) from None
        raise RuntimeFailure(f"Docker refused the container: {error.message}") from None
    await container.start()
    return str(container.id)


async def address_on_network(host: Host, container_id: str, service_slug: str) -> str:
    """The container's IP address on its service's network."""
    details = await (await host.docker.containers.get(container_id)).show()
    networks = details["NetworkSettings"]["Networks"]
    return str(networks[network_name(service_slug)]["IPAddress"])


async def wait_healthy(
    host: Host,
    container_id: str,
    service_slug: str,
    *,
    port: int | None,
    path: str | None,
    timeout_seconds: float,
) -> None:
    """Wait until the component answers: HTTP ``path`` below 500, else ``port`` open, else
    simply running. Raises RuntimeFailure with the container's last log lines otherwise."""
    container = await host.docker.containers.get(container_id)
    deadline = time.monotonic() + timeout_seconds
    address = await address_on_network(host, container_id, service_slug)
    while True:
        details = await container.show()
        state = details["State"]
        # The restart policy brings a crashing container back: a restart is a crash too.
        if not state.get("Running") or state.get("Restarting") or details.get("RestartCount"):
            raise RuntimeFailure(
                f"the container exited with code {state.get('ExitCode')}"
                + await _last_lines(container)
            )
        if port is None or await _answers(address, port, path):
            return
        if time.monotonic() > deadline:
            check = f"HTTP GET {path} on port {port}" if path else f"port {port} open"
            raise RuntimeFailure(
                f"no {check} within {timeout_seconds:g} s" + await _last_lines(container)
            )
        await asyncio.sleep(HEALTH_POLL_SECONDS)


async def _answers(address: str, port: int, path: str | None) -> bool:
    try:
        if path is None:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 2)
            writer.close()
            await writer.wait_closed()
            return True
        timeout = aiohttp.ClientTimeout(total=2)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://{address}:{port}{path}", allow_redirects=False) as response,
        ):
            return response.status < 500
    except (OSError, TimeoutError, aiohttp.ClientError):
        return False


async def _last_lines(container: aiodocker.containers.DockerContainer) -> str:
    lines = await container.log(stdout=True, stderr=True, tail=LAST_LOG_LINES)
    text = "".join(lines).strip()
    return f"; its last output:\n{text}" if text else "; it printed nothing"


async def stop_and_remove(host: Host, container_id: str) -> None:
    """Stop (within the container's stop timeout) and remove; a missing one is fine."""
    try:
        container = await host.docker.containers.get(container_id)
        await container.stop()
        await container.delete(force=True)
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise


async def managed_containers(
    host: Host, service_slug: str | None = None
) -> list[dict[str, object]]:
    """Digi's containers on the host (all, or one service's), as Docker lists them."""
    label = f"{LABEL_SERVICE}={service_slug}" if service_slug else f"{LABEL_MANAGED}=true"
    containers = await host.docker.containers.list(all=True, filters={"label": [label]})
    return [container._container for container in containers]

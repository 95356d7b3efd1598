"""Containers on a host: a network per service, labelled containers, health checks, stops.

Everything goes through the Host's Docker API client, so a host reached over SSH works the
same as the local engine. Container and network names derive from validated slugs and
component names only: nothing a user typed reaches Docker unchecked.
"""

from __future__ import annotations

import asyncio
import json
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
# Which Digi made it: two installations sharing an engine never touch each other's containers.
LABEL_INSTALLATION = "digi.installation"
# Health checks poll fast at first (most apps answer within a few hundred ms), then back off.
HEALTH_POLL_SECONDS = (0.02, 0.05, 0.1, 0.2)
MIN_UPTIME_SECONDS = 1.0  # healthy without a port: still running after this long
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
    installation: str = ""
    # Named volumes (created with the service's labels when missing) -> paths inside.
    volumes: dict[str, str] = field(default_factory=dict)


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


async def ensure_volume(host: Host, name: str, labels: dict[str, str]) -> None:
    """A named volume that outlives its containers (a database's data); created once."""
    try:
        await host.docker._query_json(
            "volumes/create", "POST", data={"Name": name, "Labels": labels}
        )
    except aiodocker.DockerError as error:
        if error.status != 409:
            raise


async def run_container(host: Host, spec: ContainerSpec) -> str:
    """Create and start the container on the service's network; answer its id."""
    network = await ensure_network(host, spec.service_slug)
    labels = {LABEL_MANAGED: "true", LABEL_SERVICE: spec.service_slug}
    for volume in spec.volumes:
        await ensure_volume(host, volume, {**labels, LABEL_INSTALLATION: spec.installation})
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": {
            LABEL_MANAGED: "true",
            LABEL_SERVICE: spec.service_slug,
            LABEL_COMPONENT: spec.component,
            LABEL_DEPLOYMENT: str(spec.deployment_id),
            LABEL_INSTALLATION: spec.installation,
        },
        "StopTimeout": spec.stop_timeout_seconds,
        "HostConfig": {
            # An init as PID 1 forwards SIGTERM, so a stop never waits out the whole timeout.
            "Init": True,
            # No restarts until it proved healthy (keep_running): a crash during the health
            # check then reports its real exit code instead of a restart loop.
            "RestartPolicy": {"Name": "no"},
            "NetworkMode": network,
            "Memory": spec.memory_bytes or 0,
            "NanoCpus": spec.nano_cpus or 0,
            "Mounts": [
                {"Type": "volume", "Source": volume, "Target": target}
                for volume, target in spec.volumes.items()
            ],
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [spec.component]}}},
    }
    if spec.command:
        config["Cmd"] = spec.command
    name = container_name(spec.service_slug, spec.component, spec.deployment_id)
    # What an interrupted attempt of this deployment left behind goes first: never two.
    await stop_and_remove(host, name, graceful=False)
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


async def keep_running(host: Host, container_id: str) -> None:
    """From now on Docker restarts the container when it dies, unless stopped on purpose."""
    await host.docker._query_json(
        f"containers/{container_id}/update",
        method="POST",
        data={"RestartPolicy": {"Name": "unless-stopped"}},
    )


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
    running for a second. Raises RuntimeFailure with the container's last log lines otherwise."""
    container = await host.docker.containers.get(container_id)
    deadline = time.monotonic() + timeout_seconds
    address = await address_on_network(host, container_id, service_slug)
    polls = 0
    started = time.monotonic()
    while True:
        details = await container.show()
        state = details["State"]
        # The restart policy brings a crashing container back: a restart is a crash too.
        if not state.get("Running") or state.get("Restarting") or details.get("RestartCount"):
            raise RuntimeFailure(
                f"the container exited with code {state.get('ExitCode')}"
                + await _last_lines(container)
            )
        if port is None:
            # Nothing to ask: it must stay up a moment (a command that exits at once fails).
            if time.monotonic() - started >= MIN_UPTIME_SECONDS:
                return
        elif await _answers(address, port, path):
            return
        if time.monotonic() > deadline:
            check = f"HTTP GET {path} on port {port}" if path else f"port {port} open"
            raise RuntimeFailure(
                f"no {check} within {timeout_seconds:g} s" + await _last_lines(container)
            )
        await asyncio.sleep(HEALTH_POLL_SECONDS[min(polls, len(HEALTH_POLL_SECONDS) - 1)])
        polls += 1


async def _answers(address: str, port: int, path: str | None) -> bool:
    try:
        if path is None:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel (a user's
            # cancelDeployment) that lands as the connection completes.
            async with asyncio.timeout(2):
                _, writer = await asyncio.open_connection(address, port)
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
    try:
        lines = await container.log(stdout=True, stderr=True, tail=LAST_LOG_LINES)
    except aiodocker.DockerError as error:  # removed meanwhile, say
        return f"; its output could not be read ({error.message})"
    text = "".join(lines).strip()
    return f"; its last output:\n{text}" if text else "; it printed nothing"


async def stop_and_remove(host: Host, container_id: str, *, graceful: bool = True) -> None:
    """Stop (within the container's stop timeout, unless not ``graceful``) and remove; a
    missing one, or one being removed already, is fine. ``container_id`` may be its name."""
    try:
        container = await host.docker.containers.get(container_id)
        if graceful:
            await container.stop()
        await container.delete(force=True)
    except aiodocker.DockerError as error:
        if error.status == 409 and "already in progress" in error.message:
            return
        if error.status != 404:
            raise


async def managed_containers(
    host: Host, service_slug: str | None = None, *, installation: str | None = None
) -> list[dict[str, object]]:
    """Digi's containers on the host (all, one service's, one installation's), as Docker
    lists them."""
    labels = [f"{LABEL_MANAGED}=true"]
    if service_slug:
        labels.append(f"{LABEL_SERVICE}={service_slug}")
    if installation is not None:
        labels.append(f"{LABEL_INSTALLATION}={installation}")
    containers = await host.docker.containers.list(all=True, filters={"label": labels})
    return [container._container for container in containers]


async def ensure_image(host: Host, image: str) -> str:
    """The image's id on the host, pulled first when it is not there."""
    try:
        return str((await host.docker.images.inspect(image))["Id"])
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise
    try:
        await host.docker.images.pull(image)
        return str((await host.docker.images.inspect(image))["Id"])
    except aiodocker.DockerError as error:
        raise RuntimeFailure(
            f"image {image} is not on the host and cannot be pulled ({error.message}): "
            "check its name and tag, and that the host can reach its registry"
        ) from None


async def pin_image(host: Host, image_id: str, repository: str, tag: str) -> str:
    """Tag ``image_id`` as ``repository:tag``, so a rollback finds these exact bytes even after
    the user's tag (``:latest``) has moved on."""
    await host.docker.images.tag(image_id, repository, tag=tag)
    return f"{repository}:{tag}"


async def remove_image(host: Host, reference: str) -> None:
    """Untag ``reference``; Docker keeps the layers a container still uses. Missing is fine."""
    try:
        await host.docker.images.delete(reference)
    except aiodocker.DockerError as error:
        if error.status not in (404, 409):
            raise


def pinned_repository(service_slug: str, component: str) -> str:
    """Where Digi tags the images its deployments ran (rollback targets)."""
    return f"digi/{service_slug}-{component}"


async def remove_pinned_images(host: Host, service_slug: str) -> int:
    """Untag every image pinned for the service's deployments; answers how many."""
    filters = json.dumps({"reference": [f"digi/{service_slug}-*"]})
    images = await host.docker._query_json("images/json", params={"filters": filters})
    references = [tag for image in images for tag in image.get("RepoTags") or []]
    for reference in references:
        await remove_image(host, reference)
    return len(references)


async def container_state(host: Host, container_id: str) -> dict[str, Any] | None:
    """Docker's ``State`` of the container, or ``None`` when it is gone."""
    try:
        details = await (await host.docker.containers.get(container_id)).show()
    except aiodocker.DockerError as error:
        if error.status == 404:
            return None
        raise
    return dict(details["State"])


async def stop_container(host: Host, container_id: str) -> None:
    """Stop without removing (``unless-stopped`` then keeps it down across engine restarts)."""
    await (await host.docker.containers.get(container_id)).stop()


async def restart_container(host: Host, container_id: str) -> None:
    """Restart (or start a stopped one). Tried twice: the engine may have dropped the kept-alive
    connection the first request goes out on (aiodocker reports that as status 900)."""
    for attempt in (1, 2):
        try:
            await (await host.docker.containers.get(container_id)).restart()
            return
        except aiodocker.DockerError as error:
            if error.status != 900 or attempt == 2:
                raise


async def remove_network(host: Host, service_slug: str) -> None:
    """Remove the service's network; missing is fine."""
    try:
        await (await host.docker.networks.get(network_name(service_slug))).delete()
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise


async def remove_volumes(host: Host, service_slug: str) -> list[str]:
    """Remove the service's labelled volumes; answers their names."""
    label = json.dumps({"label": [f"{LABEL_SERVICE}={service_slug}"]})
    async with host.docker._query("volumes", params={"filters": label}) as response:
        answer = await response.json()
    removed = []
    for volume in answer.get("Volumes") or []:
        name = str(volume["Name"])
        async with host.docker._query(f"volumes/{name}", method="DELETE"):
            removed.append(name)
    return removed

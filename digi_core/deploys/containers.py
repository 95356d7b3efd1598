"""Acting on a service's live containers from the API: stop, restart, and removing it all."""

from __future__ import annotations

import asyncio
import logging

from digi_core import runtime, uploads
from digi_core.deploys import routing
from digi_core.deploys.queue import JobQueue
from digi_core.deploys.requests import ACTIVE, cancel_job
from digi_core.deploys.shared import Deps, now, publish, refresh_service_status
from digi_core.errors import Conflict, DigiError, NotFound
from digi_core.models import Component, Deployment, DeploymentStatus, Service
from digi_core.plugins import await_me_maybe
from digi_core.providers import Host

log = logging.getLogger(__name__)

Status = DeploymentStatus


async def live_deployment(component: Component) -> Deployment | None:
    """The deployment whose container is the component's current one (running or stopped)."""
    return (
        await Deployment.filter(component=component, status__in=[Status.RUNNING, Status.STOPPED])
        .order_by("-id")
        .select_related("component")
        .first()
    )


async def current_container(component: Component) -> Deployment:
    """The live deployment with its container; NOT_FOUND when the component has none."""
    row = await live_deployment(component)
    if row is None or row.container_id is None:
        raise NotFound(f"{component.name} has no container: deploy it first", field="containerId")
    return row


async def _host(deps: Deps, service: Service) -> Host:
    host = await deps.existing_host(service)
    if host is None:
        raise Conflict(f"{service.name} has no host yet: deploy it first")
    return host


async def stop_component(deps: Deps, service: Service, component: Component) -> Deployment:
    row = await current_container(component)
    if row.status is Status.STOPPED:
        return row
    host = await _host(deps, service)
    await _set(deps, row, Status.STOPPED, "stopped by its owner")
    # Its hostnames answer "stopped" before the container goes.
    await routing.refresh_routes(deps, service)
    await runtime.stop_container(host, row.container_id)  # type: ignore[arg-type]
    await refresh_service_status(service)
    return row


async def restart_component(deps: Deps, service: Service, component: Component) -> Deployment:
    row = await current_container(component)
    host = await _host(deps, service)
    container_id = row.container_id or ""
    if await runtime.container_state(host, container_id) is None:
        raise Conflict(f"the container of {component.name} is gone: deploy it again")
    await runtime.restart_container(host, container_id)
    await runtime.wait_healthy(
        host,
        container_id,
        service.slug,
        port=component.internal_port,
        path=component.healthcheck_path,
        timeout_seconds=deps.settings.healthcheck_timeout,
    )
    await _set(deps, row, Status.RUNNING, "restarted by its owner")
    # A restarted container may have a new address on the network.
    await routing.refresh_routes(deps, service)
    await refresh_service_status(service)
    return row


async def teardown_service(deps: Deps, queue: JobQueue, service: Service) -> list[str]:
    """Cancel its deploys, then remove its routes, containers, network and volumes, and what
    the compute provider made for it alone. Answers what went, for the API's answer."""
    active = Deployment.filter(service=service, status__in=ACTIVE)
    for job_id in {str(job) for job in await active.values_list("job_id", flat=True)}:
        rows = await Deployment.filter(job_id=job_id).select_related("component")
        await cancel_job(job_id, rows, queue, deps.bus)
    removed: list[str] = []
    try:
        host = await deps.existing_host(service)
    except DigiError as error:
        # The deletion goes on: a VM goes with what it runs (release_service), and what is
        # left on a shared server is removed as orphans when the reconciler reaches it.
        log.warning("%s's host does not answer, its containers stay: %s", service.slug, error)
        removed.append(f"not its containers yet: {error.message}")
        host = None
    if host is not None:
        components = await service.components
        containers, volumes, images = await _remove_from_host(deps, host, service, components)
        removed += [f"{len(containers)} container(s)", "its network", f"{images} deployed image(s)"]
        removed += [f"volume {name}" for name in volumes]
    await asyncio.to_thread(uploads.remove_all, deps.settings.data_dir, service.slug)
    await deps.compute.release_service(service)
    await Deployment.filter(service=service, status__in=[Status.RUNNING, Status.STOPPED]).update(
        status=Status.SUPERSEDED, message="the service was deleted", updated_at=now()
    )
    for result in deps.registry.manager.hook.service_deleted(service=service):
        try:
            await await_me_maybe(result)
        except Exception:
            log.exception("a service_deleted hook failed")
    return removed


async def _remove_from_host(
    deps: Deps, host: Host, service: Service, components: list[Component]
) -> tuple[list[dict[str, object]], list[str], int]:
    """Routes, containers, network, volumes and pinned images of the service on its host."""
    router = deps.router
    if router is not None:
        hostnames = [name for c in components for name in await routing.hostnames(deps, c)]
        try:
            await router.remove_routes(host, hostnames)
        except DigiError as error:
            # The deletion goes on: the reconciler's route sync removes them later.
            log.warning("routes of %s stay until the next reconcile: %s", service.slug, error)
    containers = await runtime.managed_containers(host, service.slug)
    await asyncio.gather(
        *(runtime.stop_and_remove(host, str(container["Id"])) for container in containers)
    )
    await runtime.remove_network(host, service.slug)
    volumes = await runtime.remove_volumes(host, service.slug)
    images = await runtime.remove_pinned_images(host, service.slug)
    return containers, volumes, images


async def _set(deps: Deps, row: Deployment, status: DeploymentStatus, message: str) -> None:
    await Deployment.filter(id=row.id).update(status=status, message=message, updated_at=now())
    await row.refresh_from_db()
    await publish(deps.bus, row, row.component.name)

"""What the router is told: every public hostname of a component (its platform hostname and its
verified custom domains) goes to the component's live container, or to a 503 page saying why
nothing serves it (stopped, failed, suspended, not deployed yet)."""

from __future__ import annotations

import logging

from digi_core import runtime, services
from digi_core.deploys.shared import Deps
from digi_core.errors import DigiError
from digi_core.models import (
    Component,
    Deployment,
    DeploymentStatus,
    Domain,
    DomainKind,
    Service,
    ServiceStatus,
)
from digi_core.providers import Host, Route, Unavailable

log = logging.getLogger(__name__)

Status = DeploymentStatus


async def hostnames(deps: Deps, component: Component) -> list[str]:
    """The component's platform hostname, then its verified custom domains."""
    return await _names(component, await _domain(deps))


async def _domain(deps: Deps) -> str:
    return await services.default_domain(deps.settings.platform_domain)


async def _names(component: Component, domain: str) -> list[str]:
    custom = await Domain.filter(
        component=component, kind=DomainKind.CUSTOM, verified_at__isnull=False
    ).order_by("name")
    return [services.hostname(component, domain), *(row.name for row in custom)]


async def suspended(service: Service) -> bool:
    if service.status is ServiceStatus.SUSPENDED:
        return True
    owner = await service.owner
    return owner.suspended_at is not None or owner.deleted_at is not None


async def component_routes(
    deps: Deps, host: Host, service: Service, component: Component, container_id: str | None
) -> list[Route]:
    """Routes of every hostname of the component: to ``container_id`` when given, else
    to the page of the component's state (none for a component without a port)."""
    held = await suspended(service)
    return await _routes(host, service, component, container_id, await _domain(deps), held)


async def _routes(
    host: Host,
    service: Service,
    component: Component,
    container_id: str | None,
    domain: str,
    held: bool,
) -> list[Route]:
    """``component_routes`` with the platform domain and the service's suspension known."""
    if component.internal_port is None:
        return []
    names = await _names(component, domain)
    if container_id is not None and not held:
        address = await runtime.address_on_network(host, container_id, service.slug)
        upstream = f"{address}:{component.internal_port}"
        return [Route(name, upstream) for name in names]
    reason = Unavailable.SUSPENDED if held else await _unavailable(component)
    return [Route(name, None, reason) for name in names]


async def _unavailable(component: Component) -> Unavailable:
    values = await Deployment.filter(component=component).values_list("status", flat=True)
    statuses = {Status(str(value)) for value in values}
    if Status.STOPPED in statuses:
        return Unavailable.STOPPED
    if Status.FAILED in statuses:
        return Unavailable.FAILED
    return Unavailable.NOT_DEPLOYED


async def live_containers(service: Service) -> dict[int, str]:
    """Each component's running container, by component id."""
    rows = await Deployment.filter(
        service=service, status=Status.RUNNING, container_id__isnull=False
    ).order_by("id")
    return {row.component_id: str(row.container_id) for row in rows}  # type: ignore[attr-defined]


async def service_routes(
    deps: Deps, host: Host, service: Service, containers: dict[int, str] | None = None
) -> list[Route]:
    """The routes of all the service's components as they are now."""
    if containers is None:
        containers = await live_containers(service)
    domain, held = await _domain(deps), await suspended(service)
    routes: list[Route] = []
    for component in await Component.filter(service=service).order_by("id"):
        container = containers.get(component.id)
        routes += await _routes(host, service, component, container, domain, held)
    return routes


async def refresh_routes(deps: Deps, service: Service) -> None:
    """Tell the router the service's routes as they are now (after a stop, a suspension, a
    verified domain). A service never deployed has no host and no routes yet. A router
    that fails here is logged: the reconciler's sync repairs the difference."""
    router = deps.router
    if router is None or not await Deployment.exists(service=service):
        return
    try:
        host = await deps.existing_host(service)
        if host is None:
            return
        await router.set_routes(host, await service_routes(deps, host, service))
    except (DigiError, runtime.RuntimeFailure) as error:
        log.warning(
            "routes of %s stay as they were until the next reconcile: %s", service.slug, error
        )


async def unroute(deps: Deps, service: Service, names: list[str]) -> None:
    """Stop routing ``names`` of the service (a removed custom domain); a failure is logged,
    the reconciler's sync removes them later."""
    router = deps.router
    if router is None or not await Deployment.exists(service=service):
        return
    try:
        host = await deps.existing_host(service)
        if host is not None:
            await router.remove_routes(host, names)
    except (DigiError, runtime.RuntimeFailure) as error:
        log.warning("%s stay routed until the next reconcile: %s", names, error)

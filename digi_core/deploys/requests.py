"""The API's side of deploys: write the queued rows, enqueue, cancel, roll back.

Everything here answers at once; the worker does the slow part.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from digi_core.deploys.queue import JobQueue
from digi_core.deploys.shared import now, publish
from digi_core.errors import BadUserInput, Conflict, NotFound
from digi_core.events import EventBus
from digi_core.models import (
    Component,
    Deployment,
    DeploymentStatus,
    Service,
    ServiceStatus,
    User,
)
from digi_core.names import validate_component_name

Status = DeploymentStatus
ACTIVE = [Status.QUEUED, Status.BUILDING, Status.DEPLOYING]
SUCCEEDED = [Status.RUNNING, Status.SUPERSEDED, Status.STOPPED]


def new_job_id() -> str:
    return f"job_{secrets.token_hex(10)}"


def _check_deployable(service: Service) -> None:
    if service.deleted_at is not None:
        raise NotFound("the service was deleted")
    if service.status is ServiceStatus.SUSPENDED:
        raise Conflict("the service is suspended: an admin must lift the suspension first")


async def request_deploy(
    user: User,
    service: Service,
    only: Sequence[str],
    queue: JobQueue,
    bus: EventBus,
) -> tuple[str, list[Deployment]]:
    """Queue a deploy of ``only`` these components (all when empty); answers the job id."""
    _check_deployable(service)
    components = {component.name: component for component in await service.components}
    chosen = []
    for name in dict.fromkeys(only):
        if validate_component_name(name) not in components:
            raise NotFound(f"service has no component {name}", field="only")
        chosen.append(components[name])
    chosen = chosen or list(components.values())
    if not chosen:
        raise BadUserInput("the service has no components to deploy: add one first")
    return await _queue(user, service, chosen, queue, bus)


async def request_rollback(
    user: User, deployment: Deployment, queue: JobQueue, bus: EventBus
) -> tuple[str, list[Deployment]]:
    """Queue a deploy of the image an earlier successful deployment ran (no rebuild)."""
    service = await deployment.service
    _check_deployable(service)
    if deployment.status not in SUCCEEDED or not deployment.image:
        raise BadUserInput(
            f"deployment {deployment.id} never ran ({deployment.status.value}): roll back to "
            "one that was running",
            field="deploymentId",
        )
    component = await deployment.component
    return await _queue(user, service, [component], queue, bus, rollback_of=deployment)


async def _queue(
    user: User,
    service: Service,
    components: list[Component],
    queue: JobQueue,
    bus: EventBus,
    rollback_of: Deployment | None = None,
) -> tuple[str, list[Deployment]]:
    job_id = new_job_id()
    # A newer deploy makes older ones still waiting pointless.
    for stale in await Deployment.filter(
        component_id__in=[component.id for component in components], status=Status.QUEUED
    ).select_related("component"):
        await _cancel_row(stale, f"replaced by the newer job {job_id}", bus)
    rows = []
    for component in components:
        row = await Deployment.create(
            service=service,
            component=component,
            job_id=job_id,
            status=Status.QUEUED,
            message=f"rollback to deployment {rollback_of.id}" if rollback_of else "queued",
            image=rollback_of.image if rollback_of else None,
            rollback_of=rollback_of,
            triggered_by=user,
        )
        rows.append(row)
        await publish(bus, row, component.name)
    await queue.enqueue(job_id)
    return job_id, rows


async def cancel_job(job_id: str, rows: list[Deployment], queue: JobQueue, bus: EventBus) -> int:
    """Cancel the job's rows still waiting or in progress; answers how many."""
    cancelled = 0
    for row in rows:
        if await _cancel_row(row, "cancelled", bus):
            cancelled += 1
    if cancelled:
        await queue.abort(job_id)
    return cancelled


async def _cancel_row(row: Deployment, message: str, bus: EventBus) -> bool:
    # The worker notices at its next step (its update expects the old status) or at once
    # through the queue's abort.
    changed = await Deployment.filter(id=row.id, status__in=ACTIVE).update(
        status=Status.CANCELLED, message=message, finished_at=now(), updated_at=now()
    )
    if changed:
        await row.refresh_from_db()
        await publish(bus, row, row.component.name)
    return bool(changed)

"""What the deploy modules share: their dependencies, status events, the service's status."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import BaseORMException
from tortoise.transactions import in_transaction

from digi_core.config import Settings
from digi_core.crypto import SecretBox
from digi_core.events import EventBus
from digi_core.models import (
    Deployment,
    DeploymentLogLine,
    DeploymentStatus,
    Service,
    ServiceStatus,
)
from digi_core.plugins import Registry
from digi_core.providers import ComputeProvider, Host, LogSink, Router

log = logging.getLogger(__name__)

Status = DeploymentStatus


# Every job's status changes, for the console's deploymentActivity. No colon: it cannot be
# the channel of a job id.
ALL_DEPLOYMENTS = "deployments"


def channel(job_id: str) -> str:
    return f"deployment:{job_id}"


async def publish(
    bus: EventBus, row: Deployment, component: str, message: str | None = None
) -> None:
    """Write where ``row`` is now to its log, then tell ``deploymentStatus(jobId)``
    subscribers; with ``message`` (a step's line: a VM being made), that line instead of the
    row's stored status message.

    Called after the row is written. A status change (no ``message``) also goes to
    ``ALL_DEPLOYMENTS``; lines do not: a build writes thousands, and those who watch every
    deployment list rows, not output. Build output comes in batches (``BuildOutput``)."""
    text = row.message if message is None else message
    [line_id] = await store_log_lines(row, [text])
    await announce(bus, row, component, text, line_id, status_change=message is None)


async def announce(
    bus: EventBus,
    row: Deployment,
    component: str,
    text: str,
    line_id: int | None,
    *,
    status_change: bool = False,
) -> None:
    """The event of line ``line_id`` of the row's log (``None``: it could not be kept)."""
    event = {
        "job_id": row.job_id,
        "deployment_id": row.id,
        "component": component,
        "status": row.status.value,
        "message": text,
        "at": now().isoformat(),
        "log_line_id": line_id,
    }
    await bus.publish(channel(row.job_id), event)
    if status_change:
        await bus.publish(ALL_DEPLOYMENTS, event)


async def store_log_lines(row: Deployment, lines: list[str]) -> list[int | None]:
    """Add lines to ``row``'s log; answers their ids, which order them. A database that
    fails here loses them from the record (``None``), not from the live stream: the deploy
    goes on."""
    try:
        async with in_transaction():  # one commit for a batch
            return [
                (
                    await DeploymentLogLine.create(
                        deployment_id=row.id, at=now(), status=row.status, line=text
                    )
                ).id
                for text in lines
            ]
    except (BaseORMException, OSError) as error:
        log.warning("%d line(s) of deployment %s's log not kept: %s", len(lines), row.id, error)
        return [None] * len(lines)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What the pipeline works with; one per process."""

    settings: Settings
    registry: Registry
    bus: EventBus
    box: SecretBox
    worker_id: str

    @property
    def compute(self) -> ComputeProvider:
        return self.registry.get(ComputeProvider, self.settings.compute)

    @property
    def router(self) -> Router | None:
        return self.registry.providers(Router).get(self.settings.router)

    async def host_for(self, service: Service, sink: LogSink | None = None) -> Host:
        """The service's host, provisioned first when it has none (deploys only); what
        providing it says (a VM being made) goes to the log and to ``sink``."""

        async def log_line(line: str) -> None:
            log.info("host for %s: %s", service.slug, line)
            if sink is not None:
                await sink(line)

        return await self.compute.host_for_service(service, log_line)

    async def existing_host(self, service: Service) -> Host | None:
        """The service's host if it has one; looking never provisions."""
        return await self.compute.existing_host(service)


async def refresh_service_status(service: Service) -> None:
    """running when a component runs, failed when the last deploy failed and nothing runs."""
    if service.deleted_at is not None or service.status is ServiceStatus.SUSPENDED:
        return
    values = await Deployment.filter(service=service).distinct().values_list("status", flat=True)
    statuses = {Status(str(value)) for value in values}
    if Status.RUNNING in statuses:
        status = ServiceStatus.RUNNING
    elif statuses & {Status.QUEUED, Status.BUILDING, Status.DEPLOYING}:
        status = ServiceStatus.DEPLOYING
    elif Status.STOPPED in statuses:
        status = ServiceStatus.STOPPED
    elif Status.FAILED in statuses:
        status = ServiceStatus.FAILED
    else:
        status = ServiceStatus.CREATED
    if status is not service.status:
        service.status = status
        await service.save(update_fields=["status", "updated_at"])

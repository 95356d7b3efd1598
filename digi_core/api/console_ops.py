"""GraphQL operations for the operator console: platform counts and every user's deployments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import strawberry
from tortoise.expressions import Q

from digi_core.api.context import Info, page_limit, page_offset
from digi_core.api.types import Deployment, DeploymentStatusEnum, Page
from digi_core.errors import BadUserInput
from digi_core.models import Deployment as DeploymentRow
from digi_core.models import DeploymentStatus, ServiceStatus
from digi_core.models import Service as ServiceRow
from digi_core.models import User as UserRow

ACTIVE_STATUSES = (DeploymentStatus.QUEUED, DeploymentStatus.BUILDING, DeploymentStatus.DEPLOYING)
FAILED_WINDOW = timedelta(hours=24)
MIN_POLL_SECONDS = 0.2
MAX_POLL_SECONDS = 30.0
# A row written in the same instant as the last poll must not be missed: look back a little
# and drop what was already sent.
POLL_OVERLAP = timedelta(seconds=2)


@strawberry.type
class PlatformCounts:
    users: int
    suspended_users: int
    services: int
    failed_services: int
    running_deployments: int = strawberry.field(description="Deployments serving right now.")
    active_deployments: int = strawberry.field(description="Queued, building or deploying.")
    failed_deployments: int = strawberry.field(description="Failed in the last 24 hours.")


@strawberry.type
class ConsoleDeployment:
    """A deployment with the service and owner it belongs to, as an operator lists them."""

    deployment: Deployment
    service_id: strawberry.ID
    service_name: str
    owner_email: str
    container_id: str | None
    updated_at: datetime

    @classmethod
    def of(cls, row: DeploymentRow) -> ConsoleDeployment:
        """``row`` with ``component`` and ``service__owner`` selected."""
        return cls(
            deployment=Deployment.of(row, row.component.name),
            service_id=strawberry.ID(str(row.service.id)),
            service_name=row.service.name,
            owner_email=row.service.owner.email,
            container_id=row.container_id,
            updated_at=row.updated_at,
        )


@strawberry.type
class ConsoleQuery:
    @strawberry.field(description="How many users, services and deployments (admins only).")
    async def platform_counts(self, info: Info) -> PlatformCounts:
        await info.context.require_admin()
        users = UserRow.filter(deleted_at__isnull=True)
        services = ServiceRow.filter(deleted_at__isnull=True)
        deployments = DeploymentRow.filter(service__deleted_at__isnull=True)
        return PlatformCounts(
            users=await users.count(),
            suspended_users=await users.filter(suspended_at__isnull=False).count(),
            services=await services.count(),
            failed_services=await services.filter(status=ServiceStatus.FAILED).count(),
            running_deployments=await deployments.filter(status=DeploymentStatus.RUNNING).count(),
            active_deployments=await deployments.filter(status__in=ACTIVE_STATUSES).count(),
            failed_deployments=await deployments.filter(
                status=DeploymentStatus.FAILED, updated_at__gte=datetime.now(UTC) - FAILED_WINDOW
            ).count(),
        )

    @strawberry.field(
        description="Every user's deployments, newest first; filtered by status, or by a "
        "search in the service's name or the owner's email (admins only)."
    )
    async def recent_deployments(
        self,
        info: Info,
        status: DeploymentStatusEnum | None = None,  # type: ignore[valid-type]
        search: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[ConsoleDeployment]:
        await info.context.require_admin()
        query = DeploymentRow.filter(service__deleted_at__isnull=True)
        if status is not None:
            query = query.filter(status=DeploymentStatus(status))
        if search:
            text = search[:64]
            query = query.filter(
                Q(service__name__icontains=text) | Q(service__owner__email__icontains=text)
            )
        total = await query.count()
        rows = (
            await query.order_by("-created_at", "-id")
            .offset(page_offset(offset))
            .limit(page_limit(limit))
            .select_related("component", "service__owner")
        )
        return Page(
            items=[ConsoleDeployment.of(row) for row in rows],
            total_count=total,
            offset=offset,
            limit=limit,
        )


@strawberry.type
class ConsoleSubscription:
    @strawberry.subscription(
        description="Every deployment that changes from now on, whoever owns it (admins only). "
        "Read from the database every `everySeconds`, so it sees the changes of every worker "
        "process, with or without Redis."
    )
    async def deployment_activity(
        self, info: Info, every_seconds: float = 1.0
    ) -> AsyncGenerator[ConsoleDeployment, None]:
        await info.context.recheck()
        await info.context.require_admin()
        if not MIN_POLL_SECONDS <= every_seconds <= MAX_POLL_SECONDS:
            raise BadUserInput(
                f"everySeconds must be between {MIN_POLL_SECONDS} and {MAX_POLL_SECONDS}",
                field="everySeconds",
            )
        # The status events on the bus are per job; one channel for all jobs does not exist,
        # and the database is the truth anyway.
        since = datetime.now(UTC)
        sent: dict[int, tuple[datetime, str, str]] = {}
        while True:
            await asyncio.sleep(every_seconds)
            rows = (
                await DeploymentRow.filter(updated_at__gte=since - POLL_OVERLAP)
                .order_by("updated_at", "id")
                .select_related("component", "service__owner")
            )
            for row in rows:
                since = max(since, row.updated_at)
                seen = (row.updated_at, row.status.value, row.message)
                if sent.get(row.id) == seen:
                    continue
                sent[row.id] = seen
                yield ConsoleDeployment.of(row)
            horizon = since - POLL_OVERLAP
            sent = {key: value for key, value in sent.items() if value[0] >= horizon}

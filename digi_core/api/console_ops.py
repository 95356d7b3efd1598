"""GraphQL operations for the operator console: platform counts and every user's deployments."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import strawberry
from tortoise.expressions import Q

from digi_core.api.context import Info, page_limit, page_offset
from digi_core.api.types import Deployment, DeploymentStatusEnum, Page
from digi_core.deploys.shared import ALL_DEPLOYMENTS
from digi_core.models import Deployment as DeploymentRow
from digi_core.models import DeploymentStatus, ServiceStatus
from digi_core.models import Service as ServiceRow
from digi_core.models import User as UserRow

ACTIVE_STATUSES = (DeploymentStatus.QUEUED, DeploymentStatus.BUILDING, DeploymentStatus.DEPLOYING)
FAILED_WINDOW = timedelta(hours=24)
# How many rows deploymentActivity remembers the last sent state of, to skip sending it again.
REMEMBERED_ROWS = 1000


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
        description="Every user's deployments as they change (admins only): first those in "
        "progress now (queued, building or deploying), then each one whose status or message "
        "changes, as the deploy workers publish it (through Redis when it is configured, so "
        "from every worker process). A subscriber that falls behind may skip a step, never a "
        "row's latest state; list `recentDeployments` for the rest."
    )
    async def deployment_activity(self, info: Info) -> AsyncGenerator[ConsoleDeployment, None]:
        await info.context.recheck()
        await info.context.require_admin()
        rows = DeploymentRow.filter(service__deleted_at__isnull=True).select_related(
            "component", "service__owner"
        )
        sent: dict[int, tuple[str, str, datetime]] = {}

        def changed(row: DeploymentRow) -> bool:
            # Events are hints: the row is read when one arrives, so two events read after the
            # second write would send the same state twice.
            state = (row.status.value, row.message, row.updated_at)
            if sent.get(row.id) == state:
                return False
            sent.pop(row.id, None)  # to the end: the first one is the longest unchanged
            sent[row.id] = state
            if len(sent) > REMEMBERED_ROWS:
                del sent[next(iter(sent))]
            return True

        async with info.context.bus.subscribe(ALL_DEPLOYMENTS) as events:
            # Read once subscribed: a change in between arrives again, none is lost.
            for row in await rows.filter(status__in=ACTIVE_STATUSES).order_by("id"):
                changed(row)
                yield ConsoleDeployment.of(row)
            async for event in events:
                found = await rows.get_or_none(id=event["deployment_id"])
                # None: the row, or its service, is gone since the event was published.
                if found is not None and changed(found):
                    yield ConsoleDeployment.of(found)

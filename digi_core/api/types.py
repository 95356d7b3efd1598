"""GraphQL object types, and how each is made from a model row or a provider's answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from digi_core import models
from digi_core.api.context import Info, page_limit
from digi_core.domains import record_name
from digi_core.providers import HostStatus, StatsPoint

T = TypeVar("T")

RoleEnum = strawberry.enum(models.Role, name="Role")
PlanEnum = strawberry.enum(models.Plan, name="Plan")
ServiceStatusEnum = strawberry.enum(models.ServiceStatus, name="ServiceStatus")
ComponentTypeEnum = strawberry.enum(models.ComponentType, name="ComponentType")
DeploymentStatusEnum = strawberry.enum(models.DeploymentStatus, name="DeploymentStatus")
DomainKindEnum = strawberry.enum(models.DomainKind, name="DomainKind")
AuditOutcomeEnum = strawberry.enum(models.AuditOutcome, name="AuditOutcome")


@strawberry.enum
class Timeframe(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@strawberry.type
class Page(Generic[T]):
    """One page of a list: ``items`` from ``offset``, at most ``limit``, of ``totalCount``."""

    items: list[T]
    total_count: int
    offset: int
    limit: int


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str
    role: RoleEnum  # type: ignore[valid-type]
    plan: PlanEnum  # type: ignore[valid-type]
    extra_storage_blocks: int
    email_verified: bool
    suspended: bool
    created_at: datetime

    @classmethod
    def of(cls, user: models.User) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            name=user.name,
            role=user.role,
            plan=user.plan,
            extra_storage_blocks=user.extra_storage_blocks,
            email_verified=user.email_verified_at is not None,
            suspended=user.suspended_at is not None,
            created_at=user.created_at,
        )


@strawberry.type
class ApiToken:
    id: strawberry.ID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: models.ApiToken) -> ApiToken:
        return cls(
            id=strawberry.ID(str(token.id)),
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


@strawberry.type
class NewApiToken:
    """A token just made: ``token`` is shown this once and never again."""

    token: str
    api_token: ApiToken


@strawberry.type
class EnvVar:
    id: strawberry.ID
    key: str
    value: str | None = strawberry.field(description="Shown to the service's owner only.")
    component: str | None = strawberry.field(description="Component name; null for service-wide.")


@strawberry.type
class Deployment:
    id: strawberry.ID
    job_id: str
    component: str
    status: DeploymentStatusEnum  # type: ignore[valid-type]
    message: str
    error: str | None
    image: str | None
    commit_sha: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rollback_of: strawberry.ID | None = strawberry.field(
        default=None, description="The deployment whose image this one ran again."
    )

    @classmethod
    def of(cls, deployment: models.Deployment, component_name: str) -> Deployment:
        return cls(
            id=strawberry.ID(str(deployment.id)),
            job_id=deployment.job_id,
            component=component_name,
            status=deployment.status,
            message=deployment.message,
            error=deployment.error,
            image=deployment.image,
            commit_sha=deployment.commit_sha,
            created_at=deployment.created_at,
            started_at=deployment.started_at,
            finished_at=deployment.finished_at,
            rollback_of=id_or_none(deployment.rollback_of_id),  # type: ignore[attr-defined]
        )


@strawberry.type
class DeploymentLogEntry:
    id: strawberry.ID = strawberry.field(description="Ask for the lines after this one next.")
    at: datetime
    status: DeploymentStatusEnum = strawberry.field(  # type: ignore[valid-type]
        description="The deployment's status when the line was written."
    )
    line: str


@strawberry.type
class DeploymentLog:
    deployment: Deployment
    lines: list[DeploymentLogEntry]
    has_more: bool = strawberry.field(
        description="More lines follow: ask again with `after` = the last line's id."
    )


@strawberry.type
class Component:
    id: strawberry.ID
    name: str
    type: ComponentTypeEnum  # type: ignore[valid-type]
    image: str | None
    repo_url: str | None
    branch: str | None
    commit: str | None
    port: int | None
    healthcheck_path: str | None
    subdomain: str
    hostname: str
    url: str
    is_primary: bool

    @classmethod
    def of(
        cls, component: models.Component, domain: str, app_url: Callable[[str], str]
    ) -> Component:
        hostname = f"{component.subdomain}.{domain}"
        return cls(
            id=strawberry.ID(str(component.id)),
            name=component.name,
            type=component.type,
            image=component.image,
            repo_url=component.repo_url,
            branch=component.branch,
            commit=component.commit,
            port=component.internal_port,
            healthcheck_path=component.healthcheck_path,
            subdomain=component.subdomain,
            hostname=hostname,
            url=app_url(hostname),
            is_primary=component.is_primary,
        )


@strawberry.type
class Service:
    id: strawberry.ID
    name: str
    slug: str
    status: ServiceStatusEnum  # type: ignore[valid-type]
    url: str | None
    owner_id: strawberry.ID
    created_at: datetime
    updated_at: datetime
    components: list[Component]
    row: strawberry.Private[models.Service]

    @classmethod
    def of(cls, service: models.Service, domain: str, app_url: Callable[[str], str]) -> Service:
        """``service.components`` must be prefetched (one query for a whole page)."""
        components = [Component.of(c, domain, app_url) for c in service.components]
        primary = next((c for c in components if c.is_primary), None)
        return cls(
            id=strawberry.ID(str(service.id)),
            name=service.name,
            slug=service.slug,
            status=service.status,
            url=primary.url if primary else None,
            owner_id=strawberry.ID(str(service.owner_id)),  # type: ignore[attr-defined]
            created_at=service.created_at,
            updated_at=service.updated_at,
            components=sorted(components, key=lambda c: (not c.is_primary, c.name)),
            row=service,
        )

    @strawberry.field(description="The most recent deployments, newest first.")
    async def deployments(self, info: Info, limit: int = 20) -> list[Deployment]:
        rows = (
            await models.Deployment.filter(service_id=self.row.id)
            .order_by("-created_at", "-id")
            .limit(page_limit(limit))
            .select_related("component")
        )
        return [Deployment.of(row, row.component.name) for row in rows]

    @strawberry.field(description="Env vars; values are shown to the owner only.")
    async def env_vars(self, info: Info) -> list[EnvVar]:
        return await info.context.env_vars_of(self.row)


@strawberry.type
class DeleteServiceResult:
    removed: list[str] = strawberry.field(description="What was removed with the service.")


@strawberry.type
class DeployResult:
    job_id: str
    deployments: list[Deployment]


@strawberry.type
class Domain:
    id: strawberry.ID
    name: str
    kind: DomainKindEnum  # type: ignore[valid-type]
    is_default: bool
    verified: bool
    verified_at: datetime | None = strawberry.field(
        description="When the TXT record was first found; null until verifyDomain finds it."
    )
    component_id: strawberry.ID | None
    verification_record: str | None = strawberry.field(
        description="For a custom domain: the TXT record to create to prove ownership."
    )

    @classmethod
    def of(cls, domain: models.Domain) -> Domain:
        record = None
        if domain.kind is models.DomainKind.CUSTOM and domain.verification_token:
            record = f"{record_name(domain.name)} TXT {domain.verification_token}"
        component_id = domain.component_id  # type: ignore[attr-defined]
        return cls(
            id=strawberry.ID(str(domain.id)),
            name=domain.name,
            kind=domain.kind,
            is_default=domain.is_default,
            verified=domain.verified_at is not None,
            verified_at=domain.verified_at,
            component_id=strawberry.ID(str(component_id)) if component_id else None,
            verification_record=record,
        )


@strawberry.type
class Server:
    id: str
    provider: str
    name: str
    status: str
    cpu_fraction: float | None
    cpus: int | None
    memory_bytes: float | None
    memory_total_bytes: float | None
    disk_bytes: float | None
    disk_total_bytes: float | None
    vm_count: int | None

    @classmethod
    def of(cls, host: HostStatus) -> Server:
        return cls(**host.__dict__)


@strawberry.type
class StatsSample:
    time: datetime
    cpu_fraction: float | None
    memory_bytes: float | None
    disk_bytes: float | None
    network_in_bytes: float | None
    network_out_bytes: float | None

    @classmethod
    def of(cls, point: StatsPoint) -> StatsSample:
        return cls(**point.__dict__)


@strawberry.type
class VmStats:
    vm_id: str
    timeframe: Timeframe
    samples: list[StatsSample]


@strawberry.type
class AuditLog:
    id: strawberry.ID
    actor_id: strawberry.ID | None
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    metadata: JSON
    ip: str | None
    outcome: AuditOutcomeEnum  # type: ignore[valid-type]
    created_at: datetime

    @classmethod
    def of(cls, entry: models.AuditLog) -> AuditLog:
        actor_id = entry.actor_id  # type: ignore[attr-defined]
        return cls(
            id=strawberry.ID(str(entry.id)),
            actor_id=strawberry.ID(str(actor_id)) if actor_id else None,
            actor_email=entry.actor_email,
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            metadata=JSON(entry.metadata),
            ip=entry.ip,
            outcome=entry.outcome,
            created_at=entry.created_at,
        )


@strawberry.type
class Coupon:
    id: strawberry.ID
    code: str
    percent_off: int | None
    amount_off_pence: int | None
    duration: str
    duration_in_months: int | None
    max_redemptions: int | None
    times_redeemed: int
    expires_at: datetime | None
    active: bool

    @classmethod
    def of(cls, coupon: models.Coupon) -> Coupon:
        return cls(
            id=strawberry.ID(str(coupon.id)),
            code=coupon.code,
            percent_off=coupon.percent_off,
            amount_off_pence=coupon.amount_off_pence,
            duration=coupon.duration,
            duration_in_months=coupon.duration_in_months,
            max_redemptions=coupon.max_redemptions,
            times_redeemed=coupon.times_redeemed,
            expires_at=coupon.expires_at,
            active=coupon.active,
        )


@strawberry.type
class CheckoutSession:
    url: str


@strawberry.type
class DeploymentEvent:
    job_id: str
    deployment_id: strawberry.ID
    component: str
    status: DeploymentStatusEnum  # type: ignore[valid-type]
    message: str
    at: datetime
    log_line_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The line of the deployment's log (`deploymentLog`) this event is; in "
        "the first events, which tell where each deployment is, its newest line. None when "
        "the line could not be kept.",
    )


@strawberry.type
class LogLine:
    container_id: str
    stream: str
    line: str
    at: datetime | None


def id_or_none(value: int | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))

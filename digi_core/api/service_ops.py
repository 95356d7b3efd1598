"""GraphQL operations on services: the data, deploys and containers, env vars, live events."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from digi_core import services
from digi_core.api.auditing import mutation
from digi_core.api.context import Info, page_limit, page_offset
from digi_core.api.types import (
    ComponentTypeEnum,
    DeleteServiceResult,
    DeploymentEvent,
    DeploymentLog,
    DeploymentLogEntry,
    DeployResult,
    EnvVar,
    LogLine,
    Page,
    Service,
    id_or_none,
)
from digi_core.api.types import Deployment as DeploymentType
from digi_core.deploys.containers import (
    current_container,
    restart_component,
    stop_component,
    teardown_service,
)
from digi_core.deploys.requests import cancel_job, request_deploy, request_rollback
from digi_core.errors import BadUserInput, NotFound
from digi_core.models import (
    Component,
    ComponentType,
    Deployment,
    DeploymentLogLine,
    DeploymentStatus,
    Role,
    User,
)
from digi_core.models import Service as ServiceRow
from digi_core.names import record_id

MAX_LOG_TAIL = 10_000
MAX_LOG_PAGE = 5000


@strawberry.input
class EnvVarInput:
    key: str
    value: str


@strawberry.input
class ComponentInput:
    name: str
    type: ComponentTypeEnum  # type: ignore[valid-type]
    image: str | None = None
    repo_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    dockerfile: str | None = None
    start_command: str | None = None
    port: int | None = None
    healthcheck_path: str | None = None
    env: list[EnvVarInput] = strawberry.field(default_factory=list)

    def spec(self) -> services.ComponentSpec:
        return services.ComponentSpec(
            name=self.name,
            type=ComponentType(self.type),
            image=self.image,
            repo_url=self.repo_url,
            branch=self.branch,
            commit=self.commit,
            dockerfile=self.dockerfile,
            start_command=self.start_command,
            port=self.port,
            healthcheck_path=self.healthcheck_path,
            env=_env_dict(self.env),
        )


def _env_dict(values: list[EnvVarInput]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        if item.key in result:
            raise BadUserInput(f"{item.key} is given twice", field="vars")
        result[item.key] = item.value
    return result


async def _service_type(info: Info, row: ServiceRow) -> Service:
    await row.fetch_related("components")
    return Service.of(row, await info.context.default_domain(), info.context.settings.app_url)


async def _owned_service(info: Info, service_id: strawberry.ID | str) -> ServiceRow:
    return await services.service_for(await info.context.require_user(), service_id)


@strawberry.type
class ServiceQuery:
    @strawberry.field(description="The caller's services (an admin's: everyone's), newest first.")
    async def services(
        self, info: Info, offset: int = 0, limit: int = 20, search: str | None = None
    ) -> Page[Service]:
        user = await info.context.require_user()
        query = services.visible_services(user)
        if search:
            query = query.filter(name__icontains=search[:64])
        total = await query.count()
        rows = (
            await query.order_by("-created_at", "-id")
            .offset(page_offset(offset))
            .limit(page_limit(limit))
            .prefetch_related("components")
        )
        domain = await info.context.default_domain()
        return Page(
            items=[Service.of(row, domain, info.context.settings.app_url) for row in rows],
            total_count=total,
            offset=offset,
            limit=limit,
        )

    @strawberry.field(description="One service by id.")
    async def service(self, info: Info, id: strawberry.ID) -> Service:
        return await _service_type(info, await _owned_service(info, id))

    @strawberry.field(
        description="A deployment's log, oldest first: its steps and its build's output, "
        "each written before it went to `deploymentStatus` (as the event's `logLineId`), so "
        "a viewer subscribes, reads this, then shows the events after the last line it read. "
        "Pages by `after` (a line's id). The newest DIGI_DEPLOY_LOGS_KEPT deployments of "
        "each component keep their logs."
    )
    async def deployment_log(
        self,
        info: Info,
        deployment_id: strawberry.ID,
        after: strawberry.ID | None = None,
        limit: int = 1000,
    ) -> DeploymentLog:
        user = await info.context.require_user()
        if not 1 <= limit <= MAX_LOG_PAGE:
            raise BadUserInput(f"limit must be between 1 and {MAX_LOG_PAGE}", field="limit")
        row = await _visible_deployment(user, deployment_id, "deploymentId")
        await row.fetch_related("component")
        after_id = 0 if after is None else record_id(after, "log line", field="after")
        lines = (
            await DeploymentLogLine.filter(deployment_id=row.id, id__gt=after_id)
            .order_by("id")
            .limit(limit + 1)
        )
        return DeploymentLog(
            deployment=DeploymentType.of(row, row.component.name),
            lines=[
                DeploymentLogEntry(
                    id=strawberry.ID(str(line.id)), at=line.at, status=line.status, line=line.line
                )
                for line in lines[:limit]
            ],
            has_more=len(lines) > limit,
        )


@strawberry.type
class ServiceMutation:
    @mutation("service", description="Create a service with its components (nothing runs yet).")
    async def create_service(
        self, info: Info, name: str, components: list[ComponentInput]
    ) -> Service:
        user = await info.context.require_user()
        row = await services.create_service(
            user, name, [component.spec() for component in components], info.context.box
        )
        return await _service_type(info, row)

    @mutation(
        "service",
        description="Rename a service (its URLs stay), add or change components by name, "
        "or remove some.",
    )
    async def update_service(
        self,
        info: Info,
        id: strawberry.ID,
        name: str | None = None,
        components: list[ComponentInput] | None = None,
        remove_components: list[str] | None = None,
    ) -> Service:
        row = await _owned_service(info, id)
        await services.update_service(
            row,
            info.context.box,
            name=name,
            components=[component.spec() for component in components or []],
            remove_components=remove_components or [],
        )
        return await _service_type(info, row)

    @mutation(
        "service",
        description="Delete a service and everything it runs, its data volumes included. "
        "`confirm` must repeat the service's name; the answer lists what was removed.",
    )
    async def delete_service(
        self, info: Info, id: strawberry.ID, confirm: str
    ) -> DeleteServiceResult:
        row = await _owned_service(info, id)
        if confirm != row.name:
            raise BadUserInput(
                f"type the service's name ({row.name}) in `confirm` to delete it", field="confirm"
            )
        removed = await services.delete_service(row)
        removed += await teardown_service(info.context.deploy_deps, info.context.jobs, row)
        return DeleteServiceResult(removed=removed)

    @mutation(
        "service",
        description="Deploy the service, or only the named components; answers a job id at once.",
    )
    async def deploy_service(
        self,
        info: Info,
        service_id: strawberry.ID,
        only: list[str] | None = None,
        rollback_to: strawberry.ID | None = None,
    ) -> DeployResult:
        user = await info.context.require_user()
        row = await services.service_for(user, service_id)
        if rollback_to is not None:
            if only:
                raise BadUserInput("give `only` or `rollbackTo`, not both", field="only")
            earlier = await _deployment_of(row, rollback_to, "rollbackTo")
            job_id, rows = await request_rollback(
                user, earlier, info.context.jobs, info.context.bus
            )
        else:
            job_id, rows = await request_deploy(
                user, row, only or [], info.context.jobs, info.context.bus
            )
        return await _deploy_result(job_id, rows)

    @mutation(
        "deployment",
        description="Run the image of an earlier successful deployment again, without "
        "rebuilding; answers a job id at once.",
    )
    async def rollback_deployment(self, info: Info, deployment_id: strawberry.ID) -> DeployResult:
        user = await info.context.require_user()
        earlier = await _visible_deployment(user, deployment_id, "deploymentId")
        job_id, rows = await request_rollback(user, earlier, info.context.jobs, info.context.bus)
        return await _deploy_result(job_id, rows)

    @mutation(
        "deployment",
        description="Cancel a deploy job: its waiting and in-progress deployments stop, what "
        "served before keeps serving. Answers the job's deployments.",
    )
    async def cancel_deployment(self, info: Info, job_id: str) -> DeployResult:
        rows = await _job_rows(info, job_id)
        await cancel_job(job_id, rows, info.context.jobs, info.context.bus)
        for row in rows:
            await row.refresh_from_db()
        return await _deploy_result(job_id, rows)

    @mutation("container", description="Stop one of the service's containers.")
    async def stop_container(
        self, info: Info, service_id: strawberry.ID, container_id: str
    ) -> bool:
        row, component = await _container_of(info, service_id, container_id)
        await stop_component(info.context.deploy_deps, row, component)
        return True

    @mutation(
        "container",
        description="Restart one of the service's containers (a stopped one starts again).",
    )
    async def restart_container(
        self, info: Info, service_id: strawberry.ID, container_id: str
    ) -> bool:
        row, component = await _container_of(info, service_id, container_id)
        await restart_component(info.context.deploy_deps, row, component)
        return True

    @mutation(
        "service",
        description="Set env vars for the whole service, or for one component when named.",
    )
    async def set_env_vars(
        self,
        info: Info,
        service_id: strawberry.ID,
        vars: list[EnvVarInput],
        component: str | None = None,
    ) -> list[EnvVar]:
        row = await _owned_service(info, service_id)
        target = await services.component_of(row, component)
        await services.set_env_vars(row, target, _env_dict(vars), info.context.box)
        return [
            variable
            for variable in await info.context.env_vars_of(row)
            if variable.component == (target.name if target else None)
        ]

    @mutation("service", description="Delete env vars by key; answers how many were deleted.")
    async def delete_env_vars(
        self,
        info: Info,
        service_id: strawberry.ID,
        keys: list[str],
        component: str | None = None,
    ) -> int:
        row = await _owned_service(info, service_id)
        target = await services.component_of(row, component)
        return await services.delete_env_vars(row, target, keys)


async def _container_of(
    info: Info, service_id: strawberry.ID, container_id: str
) -> tuple[ServiceRow, Component]:
    """The caller's service and the component behind a container id (or component name)."""
    row = await _owned_service(info, service_id)
    component = await Component.get_or_none(service=row, name=container_id)
    if component is None:
        deployment = await Deployment.get_or_none(
            service=row, container_id=container_id
        ).select_related("component")
        component = deployment.component if deployment else None
    if component is None:
        raise NotFound(f"service has no container {container_id}", field="containerId")
    return row, component


async def _deployment_of(service: ServiceRow, deployment_id: str, field: str) -> Deployment:
    row = await Deployment.get_or_none(
        id=record_id(deployment_id, "deployment", field=field), service=service
    )
    if row is None:
        raise NotFound(f"service has no deployment {deployment_id}", field=field)
    return row


async def _visible_deployment(user: User, deployment_id: str, field: str) -> Deployment:
    query = Deployment.filter(
        id=record_id(deployment_id, "deployment", field=field), service__deleted_at__isnull=True
    )
    if user.role is not Role.ADMIN:
        query = query.filter(service__owner=user)
    row = await query.first()
    if row is None:
        raise NotFound(f"no deployment {deployment_id}", field=field)
    return row


async def _job_rows(info: Info, job_id: str) -> list[Deployment]:
    user = await info.context.require_user()
    query = Deployment.filter(job_id=job_id[:64]).select_related("component").order_by("id")
    if user.role is not Role.ADMIN:
        query = query.filter(service__owner=user)
    rows = await query
    if not rows:
        raise NotFound(f"no deploy job {job_id}", field="jobId")
    return rows


async def _deploy_result(job_id: str, rows: list[Deployment]) -> DeployResult:
    deployments = []
    for row in rows:
        component = await row.component
        deployments.append(DeploymentType.of(row, component.name))
    return DeployResult(job_id=job_id, deployments=deployments)


@strawberry.type
class ServiceSubscription:
    @strawberry.subscription(
        description="Status events of a deploy job: the current state first, then live."
    )
    async def deployment_status(
        self, info: Info, job_id: str
    ) -> AsyncGenerator[DeploymentEvent, None]:
        user = await info.context.recheck()
        query = Deployment.filter(job_id=job_id).select_related("component", "service")
        if user.role is not Role.ADMIN:
            query = query.filter(service__owner=user)
        if not await query.exists():
            raise NotFound(f"no deploy job {job_id}", field="jobId")
        async with info.context.bus.subscribe(f"deployment:{job_id}") as events:
            # Read once subscribed: nothing published in between is lost.
            rows = await query
            # The subscription completes once every deployment of the job has a final status.
            unfinished = {row.id for row in rows if not row.status.final}
            for row in rows:
                newest = (
                    await DeploymentLogLine.filter(deployment_id=row.id)
                    .order_by("-id")
                    .first()
                    .values_list("id", flat=True)
                )
                yield DeploymentEvent(
                    job_id=job_id,
                    deployment_id=strawberry.ID(str(row.id)),
                    component=row.component.name,
                    status=row.status,
                    message=row.message,
                    at=row.updated_at,
                    log_line_id=id_or_none(newest),  # type: ignore[arg-type]
                )
            if not unfinished:
                return
            async for event in events:
                status = DeploymentStatus(event["status"])
                yield DeploymentEvent(
                    job_id=job_id,
                    deployment_id=strawberry.ID(str(event["deployment_id"])),
                    component=event["component"],
                    status=status,
                    message=event.get("message", ""),
                    at=datetime.fromisoformat(event["at"]),
                    log_line_id=id_or_none(event.get("log_line_id")),
                )
                if status.final:
                    unfinished.discard(event["deployment_id"])
                    if not unfinished:
                        return

    @strawberry.subscription(description="A container's output: recent lines, then live.")
    async def container_logs(
        self, info: Info, service_id: strawberry.ID, container_id: str, tail: int = 100
    ) -> AsyncGenerator[LogLine, None]:
        await info.context.recheck()
        if not 0 <= tail <= MAX_LOG_TAIL:
            raise BadUserInput(f"tail must be between 0 and {MAX_LOG_TAIL}", field="tail")
        service, component = await _container_of(info, service_id, container_id)
        live = await current_container(component)
        host = await info.context.deploy_deps.existing_host(service)
        if host is None:
            raise NotFound(f"{service.name} has no host yet: deploy it first", field="serviceId")
        container_id = str(live.container_id)
        async with info.context.log_followers.subscribe(host, container_id, tail) as lines:
            async for line in lines:
                yield LogLine(
                    container_id=container_id, stream=line.stream, line=line.text, at=line.at
                )

"""The worker's side of a deploy: claim the rows, get the image, start beside the old
container, health-check, move traffic, retire the old one; status events at every step.

Each step is a conditional update of the Deployment row (``status = expected``), so a cancel
or a second worker is noticed at the next step and nothing is done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiodocker
from tortoise.expressions import F

from digi_core import references, runtime
from digi_core.config import Settings
from digi_core.deploys import builds, databases, routing
from digi_core.deploys.deployment_log import prune_logs
from digi_core.deploys.shared import Deps, now, publish, refresh_service_status
from digi_core.errors import DigiError
from digi_core.models import (
    Component,
    ComponentType,
    Deployment,
    DeploymentStatus,
    EnvVar,
    Plan,
    Service,
)
from digi_core.plugins import await_me_maybe
from digi_core.providers import Host

log = logging.getLogger(__name__)

Status = DeploymentStatus
IN_PROGRESS = [Status.QUEUED, Status.BUILDING, Status.DEPLOYING]
PINNED_IMAGES_KEPT = 5


class Cancelled(Exception):
    """The row left the status this step expected: cancelled, or taken by someone else."""


class DeployRunner:
    """Runs deploy jobs: everything queued under one job id, component after component."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def run_job(self, job_id: str) -> None:
        rows = (
            await Deployment.filter(job_id=job_id, status=Status.QUEUED)
            .select_related("service__owner", "component")
            .order_by("id")
        )
        if not rows:
            return
        service = rows[0].service
        for row in rows:
            await prune_logs(row.component.id, self.deps.settings.deploy_logs_kept)
        # Databases and workers before the app that needs them.
        rows.sort(key=lambda row: (row.component.is_primary, row.id))
        heartbeat = asyncio.create_task(self._heartbeat(job_id))
        try:
            if service.deleted_at is not None:
                for row in rows:
                    await self._finish(row, Status.CANCELLED, "the service was deleted")
                return
            try:
                host = await self._host(service, rows)
            except DigiError as error:
                for row in rows:
                    await self._finish(row, Status.FAILED, "no host for the service", str(error))
                return
            failed: list[str] = []
            for row in rows:
                if failed:  # what comes after a failed database would not find it
                    await self._finish(
                        row, Status.CANCELLED, f"not deployed: {', '.join(failed)} failed first"
                    )
                    continue
                await self.deploy_component(host, service, row)
                if row.component.type in databases.MANAGED and row.status is Status.FAILED:
                    failed.append(row.component.name)
            await refresh_service_status(service)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _host(self, service: Service, rows: list[Deployment]) -> Host:
        """The service's host. When one must be made first (a VM: minutes), the job's rows
        are claimed meanwhile: the heartbeat keeps them fresh, and a worker lost mid-way is
        noticed like one lost mid-build, its job resumed by another (the provider continues
        what it had made)."""
        try:
            found = await self.deps.existing_host(service)
        except DigiError:
            found = None  # unreachable now: host_for_service says so, or makes it again
        if found is not None:
            return found
        for row in list(rows):
            try:
                await self._advance(
                    row,
                    Status.QUEUED,
                    Status.BUILDING,
                    "getting a host for the service",
                    claim=True,
                )
            except Cancelled:
                rows.remove(row)

        async def provisioning(line: str) -> None:
            # A VM being made takes minutes: its steps show in the deploy's stream.
            for row in rows:
                await publish(self.deps.bus, row, row.component.name, line)

        return await self.deps.host_for(service, provisioning)

    async def _heartbeat(self, job_id: str) -> None:
        """Keeps the job's active rows fresh: a row silent too long has a dead worker."""
        while True:
            await asyncio.sleep(self.deps.settings.worker_heartbeat)
            await Deployment.filter(
                job_id=job_id,
                claimed_by=self.deps.worker_id,
                status__in=[Status.BUILDING, Status.DEPLOYING],
            ).update(updated_at=now())

    async def deploy_component(self, host: Host, service: Service, row: Deployment) -> None:
        component = row.component
        # What to remove if this deploy does not go live, by name: the container may exist
        # before Docker has answered with its id (a cancel during start, a failed start).
        leftover: str | None = runtime.container_name(service.slug, component.name, row.id)
        paused: list[Deployment] = []  # a database's old servers, stopped to free its volume
        try:
            # Claimed already when its host had to be made first.
            claimed = row.status is Status.BUILDING
            await self._advance(
                row,
                Status.BUILDING if claimed else Status.QUEUED,
                Status.BUILDING,
                "getting the image",
                claim=not claimed,
            )
            image = await self._image(host, service, component, row)
            if component.type in databases.MANAGED:
                if await self._database_unchanged(host, row, component, image):
                    return
                paused = await self._free_volume(host, component, row)
            await self._advance(row, Status.BUILDING, Status.DEPLOYING, f"starting {image}")
            container = await self._start_container(host, service, component, row, image)
            await self._say(row, "waiting for the health check")
            await self._wait_healthy(host, service, component, container)
            previous = await self._running(component, exclude=row.id)
            if any(other.id > row.id for other in previous):
                # A newer deploy of this component went live first: it stays.
                await self._discard(host, leftover)
                await self._finish(row, Status.SUPERSEDED, "a newer deployment went live first")
                return
            await self._route(host, service, component, container)
            try:
                await self._advance(row, Status.DEPLOYING, Status.RUNNING, "running")
            except Cancelled:
                # Cancelled in the last moment: traffic goes back to what served before.
                if previous and previous[0].container_id:
                    await self._route(host, service, component, previous[0].container_id)
                raise
            leftover = None  # it is the live one now
            await self._after_going_live(host, row, service, container, previous)
        except Cancelled:
            await self._undo(host, leftover, paused)
        except (runtime.RuntimeFailure, DigiError) as error:
            await self._undo(host, leftover, paused)
            await self._finish(row, Status.FAILED, "failed", str(error))
            await self._show_failure(host, service, component)
            await self._finished_hook(row, service)
        except asyncio.CancelledError:
            await asyncio.shield(self._undo(host, None, paused))
            await asyncio.shield(self._interrupted(host, row, leftover))
            raise
        except Exception as error:
            log.exception("deployment %s failed unexpectedly", row.id)
            await self._undo(host, leftover, paused)
            await self._finish(row, Status.FAILED, "failed", f"internal error: {error}")
            await self._show_failure(host, service, component)
            await self._finished_hook(row, service)

    async def _undo(self, host: Host, leftover: str | None, paused: list[Deployment]) -> None:
        """This deployment did not go live: its container goes, and a database's old server
        (stopped to free the volume) serves again, before anyone is told."""
        await self._discard(host, leftover)
        await self._resume(host, paused)

    async def _database_unchanged(
        self, host: Host, row: Deployment, component: Component, image: str
    ) -> bool:
        """A database is replaced only when its image changed: otherwise the running one
        stays, data, connections and all, and this deployment takes it over."""
        previous = await self._running(component, exclude=row.id)
        if not previous or not previous[0].container_id or not previous[0].image:
            return False
        live = previous[0]
        state = await runtime.container_state(host, live.container_id or "")
        same = (await host.docker.images.inspect(image))["Id"] == (
            await host.docker.images.inspect(live.image or "")
        )["Id"]
        if not same or not state or not state.get("Running"):
            return False
        await Deployment.filter(id=row.id).update(container_id=live.container_id)
        await self._advance(row, Status.BUILDING, Status.DEPLOYING, "unchanged")
        await self._advance(row, Status.DEPLOYING, Status.RUNNING, "unchanged: kept running")
        await Deployment.filter(id=live.id).update(
            status=Status.SUPERSEDED, message="taken over by a newer deployment", updated_at=now()
        )
        return True

    async def _free_volume(
        self, host: Host, component: Component, row: Deployment
    ) -> list[Deployment]:
        """Two database servers must never share a data volume: the old one stops first
        (a short outage, the price of a new image); answers what was stopped."""
        stopped = []
        for old in await self._running(component, exclude=row.id):
            state = old.container_id and await runtime.container_state(host, old.container_id)
            if old.status is Status.RUNNING and state:
                await self._say(row, "stopping the old server: its volume is taken over")
                # STOPPED first: the reconciler must not bring it back meanwhile.
                await Deployment.filter(id=old.id).update(
                    status=Status.STOPPED, message=f"paused for deployment {row.id}"
                )
                await runtime.stop_container(host, old.container_id or "")
                stopped.append(old)
        return stopped

    async def _resume(self, host: Host, paused: list[Deployment]) -> None:
        for old in paused:
            try:
                await runtime.restart_container(host, old.container_id or "")
            except aiodocker.DockerError as error:
                log.error(
                    "the old database of deployment %s did not start again: %s", old.id, error
                )
                continue
            await Deployment.filter(id=old.id).update(status=Status.RUNNING, message="running")

    async def _after_going_live(
        self,
        host: Host,
        row: Deployment,
        service: Service,
        container: str,
        previous: list[Deployment],
    ) -> None:
        """Housekeeping once the new container serves: a failure here is logged, never
        turned into a failed deployment (it is live) and repaired by the reconciler."""
        try:
            await runtime.keep_running(host, container)
            await self._retire(host, previous)
        except (aiodocker.DockerError, OSError) as error:
            log.warning("deployment %s is live, but cleaning up failed: %s", row.id, error)
        await self._finished_hook(row, service)

    async def recreate(self, host: Host, service: Service, row: Deployment) -> str:
        """Run a running deployment's container again (it died or was removed behind Digi's
        back): same image, env and name; traffic moves to it once healthy."""
        component = row.component
        if row.image is None:
            raise runtime.RuntimeFailure("the deployment has no image to run again")
        container = await self._start_container(host, service, component, row, row.image)
        try:
            await self._wait_healthy(host, service, component, container)
            await self._route(host, service, component, container)
            await runtime.keep_running(host, container)
        except BaseException:
            await asyncio.shield(self._discard(host, container))
            raise
        return container

    async def _start_container(
        self, host: Host, service: Service, component: Component, row: Deployment, image: str
    ) -> str:
        spec = runtime.ContainerSpec(
            service_slug=service.slug,
            component=component.name,
            deployment_id=row.id,
            image=image,
            env=await self._env(service, component),
            command=_command(component),
            memory_bytes=self._memory_bytes(service),
            nano_cpus=self._nano_cpus(service),
            stop_timeout_seconds=self.deps.settings.stop_timeout,
            installation=self.deps.settings.installation_id,
        )
        if component.type in databases.MANAGED:
            secret = await databases.password(component, self.deps.box)
            database = databases.container(component, service.slug, secret, self.deps.settings)
            spec.env |= database.env
            spec.command = database.command
            spec.volumes = database.volumes
        container = await runtime.run_container(host, spec)
        row.container_id = container
        await Deployment.filter(id=row.id).update(container_id=container, updated_at=now())
        return container

    async def _wait_healthy(
        self, host: Host, service: Service, component: Component, container: str
    ) -> None:
        await runtime.wait_healthy(
            host,
            container,
            service.slug,
            port=databases.port(component) or component.internal_port,
            path=component.healthcheck_path,
            timeout_seconds=self.deps.settings.healthcheck_timeout,
        )

    async def _interrupted(self, host: Host, row: Deployment, container: str | None) -> None:
        """A cancel (the row says so) or this worker shutting down (the row is handed back
        to the queue, so the next worker resumes it at once)."""
        await self._discard(host, container)
        await row.refresh_from_db(fields=["status"])
        if row.status is Status.CANCELLED:
            return
        handed_back = await Deployment.filter(
            id=row.id, status__in=[Status.BUILDING, Status.DEPLOYING]
        ).update(
            status=Status.QUEUED,
            message="the worker stopped; the deploy resumes when a worker starts",
            claimed_by=None,
            attempts=F("attempts") - 1,
            updated_at=now(),
        )
        if handed_back:
            await row.refresh_from_db()
            await publish(self.deps.bus, row, row.component.name)

    async def _image(
        self, host: Host, service: Service, component: Component, row: Deployment
    ) -> str:
        """The exact image to run, pinned under Digi's own tag so a rollback finds it."""
        if row.rollback_of_id is not None:  # type: ignore[attr-defined]
            if row.image is None:
                raise runtime.RuntimeFailure("the deployment rolled back to has no image")
            try:
                await host.docker.images.inspect(row.image)
            except aiodocker.DockerError:
                raise runtime.RuntimeFailure(
                    f"the image of the deployment rolled back to ({row.image}) is gone from "
                    "the host: deploy the service anew instead"
                ) from None
            return row.image
        repository = runtime.pinned_repository(service.slug, component.name)
        if component.type in builds.BUILT:
            tag = f"{repository}:d{row.id}"
            pinned = await builds.build_image(self.deps, host, component, row, tag, self._say)
        elif reference := _image_reference(component, self.deps.settings):
            await self._say(row, f"getting image {reference}")
            image_id = await runtime.ensure_image(host, reference)
            pinned = await runtime.pin_image(host, image_id, repository, f"d{row.id}")
        else:
            raise runtime.RuntimeFailure(
                f"{component.type.value} components are not deployable in this version"
            )
        row.image = pinned
        await row.save(update_fields=["image", "commit_sha", "source_path", "updated_at"])
        return pinned

    async def _env(self, service: Service, component: Component) -> dict[str, str]:
        """The managed databases' URLs, then service-wide variables, then the component's own
        over them; PORT when declared; ${{component.VARIABLE}} references resolved."""
        components = await Component.filter(service=service)
        rows = await EnvVar.filter(service=service)
        own: dict[str, dict[str, str]] = {other.name: {} for other in components}
        shared: dict[str, str] = {}
        for variable in rows:
            value = self.deps.box.decrypt(variable.value_encrypted)
            if not variable.scope:
                shared[variable.key] = value
            elif variable.scope in own:
                own[variable.scope][variable.key] = value
        provided: dict[str, dict[str, str]] = {}
        for other in components:
            provided[other.name] = {"PORT": str(other.internal_port)} if other.internal_port else {}
            if other.type in databases.MANAGED:
                secret = await databases.password(other, self.deps.box)
                provided[other.name] |= databases.variables(other, secret)
        env: dict[str, str] = {}
        if component.type not in databases.MANAGED:  # a server gets no client settings
            managed = [other for other in components if other.type in databases.MANAGED]
            env = databases.injected((other, provided[other.name]) for other in managed)
            env |= provided[component.name]
        env |= shared | own[component.name]
        known = {name: provided[name] | shared | own[name] for name in own}
        return references.resolve(env, known, component=component.name)

    def _memory_bytes(self, service: Service) -> int | None:
        settings = self.deps.settings
        megabytes = (
            settings.pro_memory_mb if service.owner.plan is Plan.PRO else settings.free_memory_mb
        )
        return megabytes * 1024 * 1024 or None

    def _nano_cpus(self, service: Service) -> int | None:
        settings = self.deps.settings
        cpus = settings.pro_cpus if service.owner.plan is Plan.PRO else settings.free_cpus
        return int(cpus * 1e9) or None

    async def _route(
        self, host: Host, service: Service, component: Component, container_id: str
    ) -> None:
        router = self.deps.router
        routes = await routing.component_routes(self.deps, host, service, component, container_id)
        if router is not None and routes:
            await router.set_routes(host, routes)

    async def _show_failure(self, host: Host, service: Service, component: Component) -> None:
        """Nothing serves the component after a failed deploy (no older version runs): its
        hostnames answer the "failed" page instead of a connection error."""
        router = self.deps.router
        if router is None or await self._running(component, exclude=0):
            return
        try:
            routes = await routing.component_routes(self.deps, host, service, component, None)
            await router.set_routes(host, routes)
        except (DigiError, runtime.RuntimeFailure) as error:
            log.warning("the failure page of %s is not routed: %s", component.name, error)

    async def _retire(self, host: Host, previous: list[Deployment]) -> None:
        """The old containers stop once traffic left them (after a short drain)."""
        for old in previous:
            await Deployment.filter(id=old.id).update(
                status=Status.SUPERSEDED, message="replaced by a newer deployment", updated_at=now()
            )
        if not previous:
            return
        router = self.deps.router
        settle = router.settle_seconds if router is not None else 0.0
        await asyncio.sleep(max(self.deps.settings.drain_seconds, settle))
        for old in previous:
            if old.container_id:
                await runtime.stop_and_remove(host, old.container_id)
        await self._prune_images(host, previous[0].component_id)  # type: ignore[attr-defined]

    async def _prune_images(self, host: Host, component_id: int) -> None:
        """Keep the pinned images of the last few successful deployments (rollback targets)."""
        old = (
            await Deployment.filter(
                component_id=component_id,
                status=Status.SUPERSEDED,
                rollback_of_id=None,
                image__startswith="digi/",
            )
            .order_by("-id")
            .offset(PINNED_IMAGES_KEPT)
        )
        for row in old:
            if row.image:
                await runtime.remove_image(host, row.image)

    async def _running(self, component: Component, *, exclude: int) -> list[Deployment]:
        """The component's live deployments; a database's paused for its replacement count."""
        live = [Status.RUNNING]
        if component.type in databases.MANAGED:
            live.append(Status.STOPPED)
        return (
            await Deployment.filter(component=component, status__in=live)
            .exclude(id=exclude)
            .order_by("-id")
        )

    async def _discard(self, host: Host, container: str | None) -> None:
        if container is not None:
            with contextlib.suppress(Exception):
                await runtime.stop_and_remove(host, container, graceful=False)

    async def _advance(
        self,
        row: Deployment,
        expected: DeploymentStatus,
        status: DeploymentStatus,
        message: str,
        *,
        claim: bool = False,
    ) -> None:
        changes: dict[str, Any] = {"status": status, "message": message, "updated_at": now()}
        if claim:
            changes |= {"claimed_by": self.deps.worker_id, "started_at": now()}
            changes["attempts"] = F("attempts") + 1
        if status.final:
            changes["finished_at"] = now()
        if not await Deployment.filter(id=row.id, status=expected).update(**changes):
            raise Cancelled
        await row.refresh_from_db()
        if status.final:  # the service's status first: a subscriber may look at it next
            log.info("deployment %s of job %s: %s", row.id, row.job_id, status.value)
            await refresh_service_status(row.service)
        await publish(self.deps.bus, row, row.component.name)

    async def _say(self, row: Deployment, message: str) -> None:
        """A step within the current status: same status, new message."""
        row.message = message
        await Deployment.filter(id=row.id).update(message=message, updated_at=now())
        await publish(self.deps.bus, row, row.component.name)

    async def _finish(
        self, row: Deployment, status: DeploymentStatus, message: str, error: str | None = None
    ) -> None:
        # Only from a status in progress: a cancel that came first stays the last word.
        changed = await Deployment.filter(id=row.id, status__in=IN_PROGRESS).update(
            status=status, message=message, error=error, finished_at=now(), updated_at=now()
        )
        await row.refresh_from_db()
        if not changed:
            return
        log.info("deployment %s of job %s: %s %s", row.id, row.job_id, status.value, error or "")
        await refresh_service_status(row.service)
        await publish(self.deps.bus, row, row.component.name)

    async def _finished_hook(self, row: Deployment, service: Service) -> None:
        hook = self.deps.registry.manager.hook
        for result in hook.deployment_finished(deployment=row, service=service):
            try:
                await await_me_maybe(result)
            except Exception:
                log.exception("a deployment_finished hook failed")


def _image_reference(component: Component, settings: Settings) -> str | None:
    """The image a docker component or a managed database runs (before pinning)."""
    if component.type is ComponentType.POSTGRES:
        return component.image or settings.postgres_image
    if component.type is ComponentType.REDIS:
        return component.image or settings.redis_image
    return component.image if component.type is ComponentType.DOCKER else None


def _command(component: Component) -> list[str] | None:
    # A start command runs through the image's own shell, as a Procfile line would; it
    # never touches a shell of Digi's host.
    return ["sh", "-c", component.start_command] if component.start_command else None

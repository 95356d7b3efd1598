"""The reconciler: compares what the database says should run with what each host runs, and
repairs the difference, level-triggered, every DIGI_RECONCILE_INTERVAL seconds.

Repairs: a deploy whose worker died is resumed (or failed after its last attempt); a deploy
past DIGI_DEPLOY_TIMEOUT is failed; a job lost from the queue is enqueued again; a running
deployment's container that died or was removed is recreated; a container with Digi's labels
and no live row is removed; each host's routes are made to match. Every repair is logged and
counted (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import aiodocker
import redis.asyncio as redis
from redis.exceptions import LockError

from digi_core import runtime
from digi_core.deploys import routing
from digi_core.deploys.pipeline import DeployRunner
from digi_core.deploys.queue import MAX_ATTEMPTS, JobQueue
from digi_core.deploys.shared import Deps, now, publish
from digi_core.errors import DigiError
from digi_core.models import Deployment, DeploymentStatus, Service
from digi_core.providers import Host, Route

log = logging.getLogger(__name__)

Status = DeploymentStatus
IN_PROGRESS = [Status.BUILDING, Status.DEPLOYING]
# A queued job this old and still waiting may have been lost from the queue: enqueue again
# (the queue drops a job it holds already).
REQUEUE_AFTER = timedelta(seconds=10)
# A replaced container keeps serving during the drain: not an orphan for this long.
RETIRED_GRACE = timedelta(seconds=60)


class Reconciler:
    def __init__(
        self,
        deps: Deps,
        queue: JobQueue,
        runner: DeployRunner,
        lock: Callable[[], AbstractAsyncContextManager[bool]] | None = None,
    ) -> None:
        self.deps = deps
        self.queue = queue
        self.runner = runner
        self.lock = lock
        self.repairs: Counter[str] = Counter()
        self.passes = 0
        self.last_pass_at: float | None = None

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.deps.settings.reconcile_interval)
            try:
                await self.reconcile()
            except Exception:  # the next pass tries again
                log.exception("reconcile pass failed")

    async def reconcile(self) -> Counter[str]:
        """One pass; answers the repairs it made. With Redis one process at a time does it."""
        async with self.lock() if self.lock else _always() as mine:
            if not mine:
                return Counter()
            made: Counter[str] = Counter()
            made += await self.recover_stale()
            made += await self.fail_overdue()
            made += await self.requeue_waiting()
            made += await self.repair_hosts()
            made += await self.repair_compute()
            self.repairs += made
            self.passes += 1
            self.last_pass_at = now().timestamp()
            return made

    async def recover_stale(self, *, everything: bool = False) -> Counter[str]:
        """Deploys whose worker went silent (``everything``: all in progress, for a single
        process that just started) go back to the queue, or fail after their last attempt."""
        made: Counter[str] = Counter()
        query = Deployment.filter(status__in=IN_PROGRESS)
        if not everything:
            silent_since = now() - timedelta(seconds=self.deps.settings.worker_stale_after)
            query = query.filter(updated_at__lt=silent_since)
        for row in await query.select_related("component"):
            # Only if nobody touched it meanwhile (its worker may have just come back).
            same = Deployment.filter(id=row.id, status=row.status, updated_at=row.updated_at)
            if row.attempts < MAX_ATTEMPTS:
                changed = await same.update(
                    status=Status.QUEUED,
                    claimed_by=None,
                    message="resuming: the worker running this deploy stopped",
                    updated_at=now(),
                )
                kind = "resumed"
            else:
                changed = await same.update(
                    status=Status.FAILED,
                    message="failed",
                    error=f"the worker stopped during this deploy {row.attempts} times: "
                    "deploy again, and check the worker's log if it keeps happening",
                    finished_at=now(),
                    updated_at=now(),
                )
                kind = "failed_after_worker_loss"
            if changed:
                log.warning("deployment %s of job %s: %s", row.id, row.job_id, kind)
                made[kind] += 1
                await row.refresh_from_db()
                await publish(self.deps.bus, row, row.component.name)
                if kind == "resumed":
                    await self.queue.enqueue(row.job_id, attempt=row.attempts)
        return made

    async def fail_overdue(self) -> Counter[str]:
        made: Counter[str] = Counter()
        started_before = now() - timedelta(seconds=self.deps.settings.deploy_timeout)
        overdue = Deployment.filter(status__in=IN_PROGRESS, started_at__lt=started_before)
        for row in await overdue.select_related("component"):
            changed = await Deployment.filter(id=row.id, status=row.status).update(
                status=Status.FAILED,
                message="failed",
                error=f"the deploy took longer than {self.deps.settings.deploy_timeout:g} s "
                "(DIGI_DEPLOY_TIMEOUT)",
                finished_at=now(),
                updated_at=now(),
            )
            if changed:
                log.warning("deployment %s of job %s: overdue, failed", row.id, row.job_id)
                made["failed_overdue"] += 1
                await self.queue.abort(row.job_id)
                await row.refresh_from_db()
                await publish(self.deps.bus, row, row.component.name)
        return made

    async def requeue_waiting(self) -> Counter[str]:
        made: Counter[str] = Counter()
        waiting = await Deployment.filter(
            status=Status.QUEUED, updated_at__lt=now() - REQUEUE_AFTER
        ).values_list("job_id", "attempts")
        attempts: dict[str, int] = {}
        for job_id, tries in waiting:
            attempts[job_id] = max(attempts.get(job_id, 0), tries)
        for job_id, tries in attempts.items():
            # Not counted as a repair: the queue cannot tell a lost job from a waiting one.
            await self.queue.enqueue(job_id, attempt=tries)
        return made

    async def repair_hosts(self) -> Counter[str]:
        """Containers of every live service, and each host's routes: its services' hostnames
        to their running containers, or to the page saying why nothing runs."""
        made: Counter[str] = Counter()
        running = (
            await Deployment.filter(status=Status.RUNNING, service__deleted_at__isnull=True)
            .select_related("service__owner", "component")
            .order_by("id")
        )
        hosts: dict[str, Host] = {}
        host_of_service: dict[int, Host] = {}
        containers: dict[int, dict[int, str]] = {}  # service id -> component id -> container
        for row in running:
            service = row.service
            host = host_of_service.get(service.id)
            if host is None:
                found = await self._host_of(service)
                if found is None:
                    continue  # no host, or not reachable now: a later pass looks again
                host = host_of_service[service.id] = hosts.setdefault(found.id, found)
            container = row.container_id
            state = await runtime.container_state(host, container) if container else None
            if state is None or not (state.get("Running") or state.get("Restarting")):
                container = await self._recreate(host, service, row, state, made)
            if container:
                containers.setdefault(service.id, {})[row.component_id] = container  # type: ignore[attr-defined]
        # Hosts without a live service may still hold orphans.
        for host in await self.deps.compute.connected_hosts():
            hosts.setdefault(host.id, host)
        expected_routes, unknown = await self._expected_routes(host_of_service, containers)
        for host in hosts.values():
            made += await self._remove_orphans(host)
            router = self.deps.router
            if router is not None and host.id not in unknown:
                try:
                    await router.sync(host, expected_routes.get(host.id, []))
                except Exception:
                    log.exception("routes of host %s could not be synced", host.id)
        return made

    async def _host_of(self, service: Service) -> Host | None:
        try:
            return await self.deps.existing_host(service)
        except DigiError as error:
            log.warning("host of %s skipped this pass: %s", service.slug, error.message)
            return None

    async def repair_compute(self) -> Counter[str]:
        """What the compute provider makes (VMs, their disks) against Digi's rows."""
        try:
            return await self.deps.compute.repair()
        except Exception:
            log.exception("the compute provider's repair failed")
            return Counter()

    async def _expected_routes(
        self, host_of_service: dict[int, Host], containers: dict[int, dict[int, str]]
    ) -> tuple[dict[str, list[Route]], set[str]]:
        """Every deployed, not deleted service's routes, by host; and the hosts whose routes
        could not all be worked out (their sync waits for the next pass rather than drop
        what it could not see)."""
        expected: dict[str, list[Route]] = {}
        unknown: set[str] = set()
        ids = await Deployment.all().distinct().values_list("service_id", flat=True)
        deployed = await Service.filter(deleted_at__isnull=True, id__in=ids).order_by("id")
        for service in deployed:
            host = host_of_service.get(service.id) or await self._host_of(service)
            if host is None:
                continue
            try:
                routes = await routing.service_routes(
                    self.deps, host, service, containers.get(service.id, {})
                )
            except (runtime.RuntimeFailure, aiodocker.DockerError, KeyError) as error:
                log.warning(
                    "routes of host %s wait for the next pass (%s: %s)",
                    host.id,
                    service.slug,
                    error,
                )
                unknown.add(host.id)
                continue
            expected.setdefault(host.id, []).extend(routes)
        return expected, unknown

    async def _recreate(
        self,
        host: Host,
        service: Service,
        row: Deployment,
        state: dict[str, object] | None,
        made: Counter[str],
    ) -> str | None:
        why = "was removed" if state is None else f"exited with code {state.get('ExitCode')}"
        log.warning(
            "container of deployment %s (%s/%s) %s: recreating",
            row.id,
            service.slug,
            row.component.name,
            why,
        )
        try:
            container = await self.runner.recreate(host, service, row)
        except Exception as error:
            log.error("deployment %s could not be recreated: %s", row.id, error)
            made["recreate_failed"] += 1
            return None
        made["recreated"] += 1
        return container

    async def _remove_orphans(self, host: Host) -> Counter[str]:
        made: Counter[str] = Counter()
        containers = await runtime.managed_containers(
            host, installation=self.deps.settings.installation_id
        )
        # A deployment may run a container an earlier one started (a database kept as is).
        live = set(
            await Deployment.filter(
                status__in=[Status.RUNNING, Status.STOPPED], container_id__isnull=False
            ).values_list("container_id", flat=True)
        )
        ids = {_deployment_id(container) for container in containers} - {None}
        rows = {
            row.id: row for row in await Deployment.filter(id__in=ids).select_related("service")
        }
        for container in containers:
            deployment_id = _deployment_id(container)
            row = rows.get(deployment_id) if deployment_id is not None else None
            if container["Id"] in live or (row is not None and _still_wanted(row)):
                continue
            log.warning(
                "removing container %s: no live deployment has it (labels %s)",
                str(container["Id"])[:12],
                container.get("Labels"),
            )
            await runtime.stop_and_remove(host, str(container["Id"]), graceful=False)
            made["orphans_removed"] += 1
        return made


def _still_wanted(row: Deployment) -> bool:
    if row.service.deleted_at is not None:
        return False
    if row.status in (Status.RUNNING, Status.STOPPED) or row.status.active:
        return True
    return row.updated_at > now() - RETIRED_GRACE


def _deployment_id(container: dict[str, object]) -> int | None:
    labels = container.get("Labels") or {}
    value = labels.get(runtime.LABEL_DEPLOYMENT) if isinstance(labels, dict) else None
    return int(value) if isinstance(value, str) and value.isdigit() else None


def redis_lock(
    client: redis.Redis, name: str, timeout: float
) -> Callable[[], AbstractAsyncContextManager[bool]]:
    """A lock among processes sharing Redis: the holder reconciles, the others skip a pass."""

    @contextlib.asynccontextmanager
    async def held() -> AsyncIterator[bool]:
        lock = client.lock(name, timeout=timeout, blocking=False)
        if not await lock.acquire():
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(LockError):
                await lock.release()

    return held


@contextlib.asynccontextmanager
async def _always() -> AsyncIterator[bool]:
    yield True

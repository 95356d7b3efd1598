"""The deploy worker and the reconciler beside it, as `digi server` and `digi worker` run them."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis

from digi_core.accounts import rotate_admin_passwords
from digi_core.deploys.pipeline import DeployRunner
from digi_core.deploys.queue import JobQueue, Scheduled
from digi_core.deploys.reconciler import Reconciler, redis_lock
from digi_core.deploys.shared import Deps

log = logging.getLogger(__name__)

# Admin passwords live 24 hours; checking hourly rotates each within an hour of expiring.
SCHEDULED: list[Scheduled] = [("0 * * * *", rotate_admin_passwords)]


class Worker:
    """Runs queued deploys and keeps hosts in line with the database."""

    def __init__(self, deps: Deps, queue: JobQueue, redis_client: redis.Redis | None) -> None:
        self.deps = deps
        self.queue = queue
        self.runner = DeployRunner(deps)
        lock = None
        if redis_client is not None:
            timeout = max(deps.settings.reconcile_interval * 4, 60)
            lock = redis_lock(redis_client, f"{deps.settings.redis_prefix}reconciler", timeout)
        self.reconciler = Reconciler(deps, queue, self.runner, lock)
        self.single_process = redis_client is None
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.single_process:
            # Nobody else runs deploys here: whatever was in progress died with the last run.
            await self.reconciler.recover_stale(everything=True)
        try:
            await rotate_admin_passwords()
        except Exception:
            log.exception("rotating admin passwords failed")
        await self.queue.work(self.runner.run_job, self.deps.settings.worker_concurrency, SCHEDULED)
        self._loop = asyncio.create_task(self.reconciler.run_forever())
        log.info(
            "deploy worker %s started (%d at once)",
            self.deps.worker_id,
            self.deps.settings.worker_concurrency,
        )

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        await self.queue.close()

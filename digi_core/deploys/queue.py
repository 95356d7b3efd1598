"""Where deploy jobs wait for a worker: saq on Redis, or an in-process queue without Redis.

A queue entry carries only a job id; the Deployment rows are the truth. So an entry lost from
Redis costs nothing (the reconciler enqueues the job again) and enqueueing twice is harmless:
each queue drops a job id it already holds, and the runner claims each row only once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import saq
from croniter import croniter
from saq.job import Status
from saq.types import PartialTimersDict

log = logging.getLogger(__name__)

JobHandler = Callable[[str], Coroutine[Any, Any, None]]
Scheduled = tuple[str, Callable[[], Awaitable[object]]]
"""A cron expression and what to run on it (with Redis, once per schedule among workers)."""

# Attempts a deploy row may take; the saq key carries the attempt so a resumed job never
# collides with the entry its dead worker left behind.
MAX_ATTEMPTS = 2


def worker_id() -> str:
    """Names this process in ``Deployment.claimed_by``: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class JobQueue(abc.ABC):
    """Takes job ids and hands each to one worker."""

    @abc.abstractmethod
    async def enqueue(self, job_id: str, attempt: int = 0) -> None:
        """Queue ``job_id`` unless this queue holds it already (waiting or running)."""

    @abc.abstractmethod
    async def abort(self, job_id: str) -> None:
        """Take ``job_id`` out of the queue, or interrupt the worker running it (which sees
        ``CancelledError``). Unknown or finished jobs are fine."""

    @abc.abstractmethod
    async def work(
        self, handler: JobHandler, concurrency: int, scheduled: Sequence[Scheduled] = ()
    ) -> None:
        """Start running jobs through ``handler`` (at most ``concurrency`` at once) and the
        ``scheduled`` jobs; returns once started."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop working (running jobs see ``CancelledError``) and disconnect. Idempotent."""


class LocalJobQueue(JobQueue):
    """The embedded default's queue: asyncio tasks in this process."""

    def __init__(self) -> None:
        self._waiting: asyncio.Queue[str] = asyncio.Queue()
        self._held: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def enqueue(self, job_id: str, attempt: int = 0) -> None:
        if job_id not in self._held:
            self._held.add(job_id)
            self._waiting.put_nowait(job_id)

    async def abort(self, job_id: str) -> None:
        self._held.discard(job_id)  # a waiting entry is skipped when it comes up
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    async def work(
        self, handler: JobHandler, concurrency: int, scheduled: Sequence[Scheduled] = ()
    ) -> None:
        self._tasks += [asyncio.create_task(self._consume(handler)) for _ in range(concurrency)]
        self._tasks += [asyncio.create_task(_on_schedule(cron, job)) for cron, job in scheduled]

    async def _consume(self, handler: JobHandler) -> None:
        while True:
            job_id = await self._waiting.get()
            if job_id not in self._held:
                continue
            task = asyncio.create_task(handler(job_id))
            self._running[job_id] = task
            try:
                # wait() rather than await: an aborted job must not stop this consumer.
                await asyncio.wait([task])
                if not task.cancelled() and task.exception() is not None:
                    log.error("deploy job %s failed", job_id, exc_info=task.exception())
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                self._running.pop(job_id, None)
                self._held.discard(job_id)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _QuietWorker(saq.Worker):  # type: ignore[type-arg]
    # The process that hosts the worker (digi server, digi worker) owns SIGINT and SIGTERM.
    SIGNALS: list[signal.Signals] = []


class SaqJobQueue(JobQueue):
    """Jobs in Redis through saq: any number of worker processes share them."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.queue = saq.Queue.from_url(redis_url, name=f"{prefix}deploys")
        self._worker: saq.Worker | None = None  # type: ignore[type-arg]
        self._worker_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.queue.connect()

    async def enqueue(self, job_id: str, attempt: int = 0) -> None:
        # timeout 0: a deploy may take long, the reconciler fails the ones stuck past
        # DIGI_DEPLOY_TIMEOUT; retries 1: the database, not saq, decides about a second try.
        await self.queue.enqueue(
            "deploy", key=f"{job_id}.{attempt}", job_id=job_id, timeout=0, retries=1
        )

    async def abort(self, job_id: str) -> None:
        keys = [f"{job_id}.{attempt}" for attempt in range(MAX_ATTEMPTS + 1)]
        for job in await self.queue.jobs(keys):
            if job is not None and job.status in (Status.QUEUED, Status.ACTIVE):
                await self.queue.abort(job, "cancelled")

    async def work(
        self, handler: JobHandler, concurrency: int, scheduled: Sequence[Scheduled] = ()
    ) -> None:
        async def deploy(ctx: dict[str, Any], *, job_id: str) -> None:
            await handler(job_id)

        cron_jobs = [
            saq.CronJob(_named(job), cron=cron, timeout=600, retries=1) for cron, job in scheduled
        ]
        self._worker = _QuietWorker(
            self.queue,
            functions=[("deploy", deploy)],
            concurrency=concurrency,
            cron_jobs=cron_jobs,
            id=worker_id(),
            # Aborts (cancel) reach a running job within this many seconds.
            timers=PartialTimersDict(schedule=1, worker_info=10, sweep=60, abort=1),
            dequeue_timeout=1.0,
        )
        self._worker_task = asyncio.create_task(self._worker.start())

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self._worker_task is not None:
            self._worker_task.cancel()
            await asyncio.gather(self._worker_task, return_exceptions=True)
            self._worker_task = None
        with contextlib.suppress(Exception):
            await self.queue.disconnect()


def _named(job: Callable[[], Awaitable[object]]) -> Any:
    async def scheduled(ctx: dict[str, Any]) -> None:
        await job()

    scheduled.__qualname__ = scheduled.__name__ = getattr(job, "__name__", "scheduled")
    return scheduled


async def _on_schedule(cron: str, job: Callable[[], Awaitable[object]]) -> None:
    """Run ``job`` at each time ``cron`` names; a failed run is logged and the schedule goes on."""
    times = croniter(cron, datetime.now(UTC))
    while True:
        delay = times.get_next(float) - datetime.now(UTC).timestamp()
        await asyncio.sleep(max(delay, 0))
        try:
            await job()
        except Exception:
            log.exception("scheduled job %s failed", getattr(job, "__name__", job))


async def make_job_queue(redis_url: str | None, prefix: str) -> JobQueue:
    if redis_url is None:
        return LocalJobQueue()
    queue = SaqJobQueue(redis_url, prefix)
    await queue.connect()
    return queue

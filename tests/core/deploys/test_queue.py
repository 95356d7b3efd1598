"""Both job queues: the in-process one and saq on the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from digi_core.deploys.queue import JobQueue, LocalJobQueue, SaqJobQueue
from tests.conftest import REDIS_URL


@pytest.fixture(params=["local", "saq"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[JobQueue]:
    if request.param == "local":
        made: JobQueue = LocalJobQueue()
    else:
        made = SaqJobQueue(REDIS_URL, f"digitest{uuid.uuid4().hex[:12]}:")
        await made.connect()  # type: ignore[attr-defined]
    yield made
    await made.close()


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()

    async def run(self, job_id: str) -> None:
        self.started.append(job_id)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(job_id)
            raise
        self.finished.append(job_id)


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within 10 s")
        await asyncio.sleep(0.05)


async def test_a_job_enqueued_twice_runs_once(queue: JobQueue) -> None:
    recorder = Recorder()
    await queue.enqueue("job_a")
    await queue.enqueue("job_a")
    await queue.work(recorder.run, concurrency=2)
    await until(lambda: recorder.started == ["job_a"], "job_a started")
    await queue.enqueue("job_a")  # still running: dropped as well
    recorder.release.set()
    await until(lambda: recorder.finished == ["job_a"], "job_a finished")
    await asyncio.sleep(0.3)
    assert recorder.started == ["job_a"]


async def test_abort_interrupts_a_running_job_and_drops_a_waiting_one(queue: JobQueue) -> None:
    recorder = Recorder()
    await queue.enqueue("job_running")
    await queue.work(recorder.run, concurrency=1)
    await until(lambda: recorder.started == ["job_running"], "the first job started")
    await queue.enqueue("job_waiting")
    await queue.abort("job_waiting")
    await asyncio.sleep(1.1)  # saq aborts jobs that have run at least a second
    await queue.abort("job_running")
    await until(lambda: recorder.cancelled == ["job_running"], "the running job cancelled")
    await queue.enqueue("job_next")
    await until(lambda: "job_next" in recorder.started, "the next job started")
    assert "job_waiting" not in recorder.started


async def test_close_interrupts_running_jobs(queue: JobQueue) -> None:
    recorder = Recorder()
    await queue.enqueue("job_long")
    await queue.work(recorder.run, concurrency=1)
    await until(lambda: recorder.started == ["job_long"], "the job started")
    await queue.close()
    assert recorder.cancelled == ["job_long"]


async def test_scheduled_jobs_run_on_their_cron(queue: JobQueue) -> None:
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    await queue.work(Recorder().run, concurrency=1, scheduled=[("* * * * * *", tick)])
    await until(lambda: len(runs) >= 2, "two runs of the every-second job")

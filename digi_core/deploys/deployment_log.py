"""A deployment's log in the database: build output written in batches and published once
written, so a viewer who arrives late reads the log, then follows live, with no line lost
between; old deployments' logs are pruned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from tortoise.expressions import Subquery

from digi_core.deploys.shared import announce, store_log_lines
from digi_core.events import EventBus
from digi_core.models import Deployment, DeploymentLogLine

log = logging.getLogger(__name__)

# A build may print thousands of lines a second: one write per line would be its bottleneck.
FLUSH_SECONDS = 0.2
FLUSH_LINES = 200


class BuildOutput:
    """The lines a build prints, for one deployment: written to its log until the log holds
    ``max_lines`` (what is beyond is counted and said once at the end), and every one
    published live after it is written.

    Use as ``async with``; ``flush()`` before anything else is published for the row, so the
    log keeps the order the lines came in."""

    def __init__(self, bus: EventBus, row: Deployment, component: str, max_lines: int) -> None:
        self.bus = bus
        self.row = row
        self.component = component
        self.max_lines = max_lines
        self.kept = 0
        self.dropped = 0
        self._pending: list[str] = []
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BuildOutput:
        # A resumed deploy's earlier attempt may have written some already.
        self.kept = await DeploymentLogLine.filter(deployment_id=self.row.id).count()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._flusher is not None:  # still asleep: it is set to None before it writes
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()
        if self.dropped:
            note = (
                f"… {self.dropped} more line(s) of output were not kept "
                f"(DIGI_DEPLOY_LOG_LINES={self.max_lines})"
            )
            [line_id] = await store_log_lines(self.row, [note])
            await announce(self.bus, self.row, self.component, note, line_id)

    async def line(self, text: str) -> None:
        """One line of output: written and published within ``FLUSH_SECONDS``."""
        self._pending.append(text)
        if len(self._pending) >= FLUSH_LINES:
            await self.flush()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        self._flusher = None
        try:
            await self.flush()
        except Exception:  # the event bus: the next flush, or the build's own step, tells
            log.exception("output of deployment %s not published", self.row.id)

    async def flush(self) -> None:
        """Write what is pending, then publish it."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            room = max(self.max_lines - self.kept, 0)
            line_ids = await store_log_lines(self.row, batch[:room]) if room else []
            self.kept += len(line_ids)
            self.dropped += len(batch) - len(line_ids)
            line_ids += [None] * (len(batch) - len(line_ids))
            for text, line_id in zip(batch, line_ids, strict=True):
                await announce(self.bus, self.row, self.component, text, line_id)


async def prune_logs(component_id: int, keep: int) -> int:
    """Remove the logs of all but the newest ``keep`` deployments of a component; answers
    how many lines went."""
    oldest_kept = (
        await Deployment.filter(component_id=component_id)
        .order_by("-id")
        .offset(keep - 1)
        .limit(1)
        .values_list("id", flat=True)
    )
    if not oldest_kept:
        return 0
    older = Deployment.filter(component_id=component_id, id__lt=oldest_kept[0]).values("id")
    return await DeploymentLogLine.filter(deployment_id__in=Subquery(older)).delete()

"""Following a deploy job live: a status line per component (a rich live table on a terminal,
plain lines otherwise), build output as it comes, then each component's URL or error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from digi_core.cli.client import ApiClient, ConnectionLost, Unreachable
from digi_core.cli.user.common import console, note_console, print_table

STATUS = (
    "subscription($job: String!) { deploymentStatus(jobId: $job) "
    "{ deploymentId component status message } }"
)
OUTCOME = """query($id: ID!) { service(id: $id) {
  components { name url }
  deployments(limit: 50) { id jobId component status message error }
} }"""
STYLES = {"RUNNING": "green", "FAILED": "red", "CANCELLED": "yellow"}
MAX_RECONNECT_DELAY = 10.0


async def reconnecting(
    open_stream: Callable[[], AsyncIterator[Any]],
) -> AsyncGenerator[Any, None]:
    """Items of ``open_stream()``, opened again (with backoff) when the connection drops.

    Only a stream that was connected is retried: a first connection that fails raises.
    """
    attempt = 0
    connected = False
    while True:
        try:
            async for item in open_stream():
                connected, attempt = True, 0
                yield item
            return
        except Unreachable as error:
            if not (connected or isinstance(error, ConnectionLost)):
                raise
            delay = min(0.5 * 2**attempt, MAX_RECONNECT_DELAY)
            attempt += 1
            note_console.print(f"{error.message}; reconnecting in {delay:g} s", markup=False)
            await asyncio.sleep(delay)


class JobProgress:
    """Where each component of a job is: its status and last message."""

    def __init__(self) -> None:
        self.components: dict[str, tuple[str, str]] = {}

    def update(self, event: dict[str, Any]) -> bool:
        """Take an event; answers whether it says something new."""
        state = (event["status"], event["message"])
        if self.components.get(event["component"]) == state:
            return False
        self.components[event["component"]] = state
        return True

    def table(self) -> Table:
        table = Table("component", "status", "last message", box=None)
        for component, (status, message) in self.components.items():
            table.add_row(component, Text(status, style=STYLES.get(status, "cyan")), Text(message))
        return table


@contextlib.contextmanager
def shown(progress: JobProgress) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function to call with each event: a live table and the messages above it on a
    terminal, one line per change otherwise (logs and CI)."""
    if not console.is_terminal:

        def print_line(event: dict[str, Any]) -> None:
            if progress.update(event):
                line = f"{event['component']}: {event['status'].lower()}: {event['message']}"
                console.print(line, markup=False)

        yield print_line
        return
    with Live(progress.table(), console=console, transient=True) as live:

        def refresh(event: dict[str, Any]) -> None:
            if progress.update(event):
                live.console.print(Text(f"{event['component']} │ {event['message']}", "dim"))
                live.update(progress.table())

        yield refresh


async def follow_job(client: ApiClient, service_id: str, job_id: str) -> bool:
    """Show the job until each of its deployments is final; True when all are running."""
    progress = JobProgress()
    with shown(progress) as show:
        stream = reconnecting(lambda: client.subscribe(STATUS, {"job": job_id}))
        async for data in stream:
            show(data["deploymentStatus"])
    service = (await client.query(OUTCOME, {"id": service_id}))["service"]
    urls = {component["name"]: component["url"] for component in service["components"]}
    rows = [row for row in service["deployments"] if row["jobId"] == job_id]
    rows.reverse()  # oldest first: the order the job deployed them
    print_table(
        ["component", "status", "url or error"],
        [
            [
                row["component"],
                row["status"],
                urls.get(row["component"])
                if row["status"] == "RUNNING"
                else row["error"] or row["message"],
            ]
            for row in rows
        ],
        f"Job {job_id} has no deployments.",
    )
    return bool(rows) and all(row["status"] == "RUNNING" for row in rows)

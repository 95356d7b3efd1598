"""`digi logs`: a container's output, live, surviving dropped connections without repeats."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import datetime
from typing import Any

import click

from digi_core.cli import cli
from digi_core.cli.client import ApiClient
from digi_core.cli.user.common import api_option, note_console, run, signed_in
from digi_core.cli.user.progress import reconnecting
from digi_core.errors import NotFound

LOGS = (
    "subscription($service: ID!, $container: String!, $tail: Int!) { containerLogs("
    "serviceId: $service, containerId: $container, tail: $tail) { stream line at } }"
)
PRIMARY = "query($id: ID!) { service(id: $id) { components { name isPrimary } } }"
# Asked for again after a reconnect, to cover what was printed while disconnected.
RECONNECT_TAIL = 1000
# --no-follow: the recent lines come at once; a quiet moment means they are all here.
FIRST_LINE_SECONDS = 10.0
QUIET_SECONDS = 1.0


class Seen:
    """The newest line printed, by its timestamp, so a replay after a reconnect skips what
    was printed already. Lines sharing that timestamp are told apart by stream and text."""

    def __init__(self) -> None:
        self.newest: datetime | None = None
        self.at_newest: Counter[tuple[str, str]] = Counter()
        self.replaying: Counter[tuple[str, str]] = Counter()

    def fresh(self, entry: dict[str, Any]) -> bool:
        """Whether to print ``entry``; records it when so."""
        if entry["at"] is None:  # a notice from Digi itself, never replayed
            return True
        at = datetime.fromisoformat(entry["at"])
        key = (entry["stream"], entry["line"])
        if self.newest is not None and at < self.newest:
            return False
        if at == self.newest and self.replaying[key] > 0:
            self.replaying[key] -= 1
            return False
        if at != self.newest:
            self.newest, self.at_newest = at, Counter()
        self.at_newest[key] += 1
        return True

    def reconnected(self) -> None:
        """A new stream replays the lines stamped ``newest`` that were printed already."""
        self.replaying = Counter(self.at_newest)


@cli.command()
@click.argument("service_id")
@click.argument("container", required=False)
@click.option(
    "--tail",
    type=click.IntRange(0, 10_000),
    default=100,
    show_default=True,
    help="Recent lines to print first.",
)
@click.option("--follow/--no-follow", default=True, help="Keep printing new lines [follow].")
@api_option
def logs(api_url: str, service_id: str, container: str | None, tail: int, follow: bool) -> None:
    """Print a container's output: its last --tail lines, then new lines as they come.

    CONTAINER is a component's name (default: the primary component) or a container id.
    A dropped connection is reopened, with backoff, without printing a line twice. Ctrl-C
    stops (exit 130). With --no-follow the recent lines are printed and the command returns.

    \b
    Example:
      digi logs 12
      digi logs 12 postgres --tail 20 --no-follow
    """
    run(_logs(api_url, service_id, container, tail, follow))


async def _logs(
    api_url: str, service_id: str, container: str | None, tail: int, follow: bool
) -> None:
    async with signed_in(api_url) as client:
        container = container or await _primary(client, service_id)
        seen = Seen()
        opened = 0

        def open_stream() -> Any:
            nonlocal opened
            if opened:
                seen.reconnected()
            opened += 1
            variables = {
                "service": service_id,
                "container": container,
                "tail": RECONNECT_TAIL if opened > 1 else tail,
            }
            return client.subscribe(LOGS, variables)

        stream = reconnecting(open_stream)
        printed = 0
        try:
            while follow or printed < tail:
                wait = QUIET_SECONDS if printed else FIRST_LINE_SECONDS
                try:
                    data = await (
                        anext(stream) if follow else asyncio.wait_for(anext(stream), wait)
                    )
                except TimeoutError:
                    break
                except StopAsyncIteration:
                    if follow:
                        note_console.print(
                            "The container stopped (a newer deployment may have replaced it).",
                        )
                    break
                entry = data["containerLogs"]
                if seen.fresh(entry):
                    sys.stdout.write(entry["line"] + "\n")
                    sys.stdout.flush()
                    printed += 1
        finally:
            await stream.aclose()


async def _primary(client: ApiClient, service_id: str) -> str:
    components = (await client.query(PRIMARY, {"id": service_id}))["service"]["components"]
    for component in components:
        if component["isPrimary"]:
            return str(component["name"])
    raise NotFound(f"service {service_id} has no components")

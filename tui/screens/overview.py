"""Overview: how many users, services, deployments and hosts, and the API's health."""

from __future__ import annotations

from collections.abc import Iterable

from textual.containers import Grid
from textual.widget import Widget
from textual.widgets import Static

from digi_tui import queries
from digi_tui.screens.base import ConsoleScreen

CARDS = {
    "users": "Users",
    "suspendedUsers": "Suspended",
    "services": "Services",
    "failedServices": "Failed svc",
    "runningDeployments": "Running",
    "activeDeployments": "Deploying",
    "failedDeployments": "Failed (24 h)",
    "hosts": "Hosts",
}


class OverviewScreen(ConsoleScreen):
    MODE = "overview"
    TITLE = "Overview"
    SHORT_TITLE = "Overview"

    def compose_body(self) -> Iterable[Widget]:
        with Grid(id="cards"):
            for key, title in CARDS.items():
                card = Static("…", id=f"card-{key}", classes="card")
                card.border_title = title
                yield card
        yield Static("", id="health", markup=False)
        yield Static("", id="plugin-screens", markup=False)

    async def load(self) -> None:
        data = await self.ask(queries.OVERVIEW)
        health = await self.console.api.health()
        counts = {**data["platformCounts"], "hosts": len(data["servers"])}
        for key in CARDS:
            self.query_one(f"#card-{key}", Static).update(str(counts[key]))
        checks = ", ".join(f"{part} {result}" for part, result in health["checks"].items())
        self.query_one("#health", Static).update(
            f"API {health['status']} (version {data['version']}): {checks}"
        )
        plugins = ", ".join(self.console.plugin_screens) or "none"
        self.query_one("#plugin-screens", Static).update(f"Plugin screens (ctrl+p): {plugins}")

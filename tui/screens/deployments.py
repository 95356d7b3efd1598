"""Deployments of every user, live from the ``deploymentActivity`` subscription, with the
build log of the one selected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import DataTable, RichLog

from digi_core.cli.client import Unreachable
from digi_core.errors import DigiError
from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.screens.base import ConsoleScreen


class DeploymentsScreen(ConsoleScreen):
    MODE = "deployments"
    TITLE = "Deployments"
    SHORT_TITLE = "Deploys"
    POLLS = False
    AUTO_FOCUS = "#deployments"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "build_log", "Build log"),
        Binding("b", "rollback", "Roll back"),
        Binding("d", "redeploy", "Redeploy"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deployments: dict[str, dict[str, Any]] = {}

    def compose_body(self) -> Iterable[Widget]:
        table: DataTable[Text] = DataTable(id="deployments", cursor_type="row")
        table.add_columns("#", "Service", "Owner", "Component", "Status", "Message")
        yield table
        log = RichLog(id="build-log", wrap=True, markup=False)
        log.border_title = "Build log (enter or g)"
        yield log

    def on_mount(self) -> None:
        super().on_mount()
        self.follow_activity()

    async def load(self) -> None:
        data = await self.ask(queries.DEPLOYMENTS)
        self.deployments = {}
        for item in reversed(data["recentDeployments"]["items"]):
            self.deployments[item["deployment"]["id"]] = item
        self.show_deployments()

    @work(group="activity")
    async def follow_activity(self) -> None:
        """Every change of any deployment, as the API sees it, for as long as the screen lives."""
        await self.console.ready.wait()
        variables = {"every": self.console.options.activity_seconds}
        while True:
            try:
                async for data in self.console.api.subscribe(
                    queries.DEPLOYMENT_ACTIVITY, variables
                ):
                    self.console.connection_restored()
                    item = data["deploymentActivity"]
                    self.deployments[item["deployment"]["id"]] = item
                    self.show_deployments()
            except NoMatches:
                return  # the screen closed while a line was on the way
            except Unreachable as error:
                self.console.connection_lost(error)
            except DigiError as error:
                self.notify(error.message, title="Live updates stopped", severity="error")
                return
            await asyncio.sleep(self.console.options.retry_seconds)

    def show_deployments(self) -> None:
        table = self.query_one("#deployments", DataTable)
        selected = self.selected()
        table.clear()
        for key in sorted(self.deployments, key=int, reverse=True):
            item = self.deployments[key]
            deployment = item["deployment"]
            table.add_row(
                *plain(
                    key,
                    item["serviceName"],
                    item["ownerEmail"],
                    deployment["component"],
                    deployment["status"].lower(),
                    deployment["message"],
                ),
                key=key,
            )
        if selected is not None:
            table.move_cursor(row=table.get_row_index(selected["deployment"]["id"]))

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#deployments", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.deployments.get(key or "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_build_log()  # enter on a row

    def action_build_log(self) -> None:
        item = self.selected()
        if item is not None:
            self.follow_build(item["deployment"]["jobId"], item["serviceName"])

    @work(exclusive=True, group="build-log")
    async def follow_build(self, job_id: str, service_name: str) -> None:
        log = self.query_one("#build-log", RichLog)
        log.clear()
        log.border_title = f"Build log of {service_name} (job {job_id})"
        try:
            async for data in self.console.api.subscribe(
                queries.DEPLOYMENT_STATUS, {"job": job_id}
            ):
                event = data["deploymentStatus"]
                log.write(f"{event['component']} {event['status'].lower()}: {event['message']}")
        except Unreachable as error:
            self.console.connection_lost(error)
        except DigiError as error:
            log.write(f"cannot follow this job: {error.message}")

    def action_rollback(self) -> None:
        item = self.selected()
        if item is None:
            return
        deployment = item["deployment"]

        async def call() -> str:
            variables = {"id": deployment["id"]}
            job = (await self.ask(queries.ROLLBACK_DEPLOYMENT, variables))["rollbackDeployment"]
            return f"Rolling {item['serviceName']} back to #{deployment['id']} (job {job['jobId']})"

        self.confirm_then(
            f"Roll {deployment['component']} of {item['serviceName']} back to the image of "
            f"deployment #{deployment['id']}?",
            f"Rolling back to #{deployment['id']}",
            call,
        )

    def action_redeploy(self) -> None:
        item = self.selected()
        if item is None:
            return

        async def call() -> str:
            variables = {"service": item["serviceId"]}
            job = (await self.ask(queries.DEPLOY_SERVICE, variables))["deployService"]
            return f"Deploying {item['serviceName']} (job {job['jobId']})"

        self.confirm_then(
            f"Deploy {item['serviceName']} again?", f"Deploying {item['serviceName']}", call
        )

"""Deployments of every user, kept live by the ``deploymentActivity`` subscription (pushed by
the API, no polling), with the selected one's log: what the API kept, then its job's live
``deploymentStatus`` events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import DataTable, Input, RichLog

from digi_core.cli.client import Unreachable
from digi_core.cli.user.deployment_log import DeploymentLog, styled
from digi_core.errors import DigiError
from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.filtering import matches
from digi_tui.screens.base import ConsoleScreen

KEPT_DEPLOYMENTS = 300
KEPT_LOG_LINES = 20_000


def _later(known: dict[str, Any], other: dict[str, Any]) -> bool:
    """``known`` was read after ``other``: of two answers about one row, it tells the truth."""
    return datetime.fromisoformat(known["updatedAt"]) > datetime.fromisoformat(other["updatedAt"])


class DeploymentsScreen(ConsoleScreen):
    MODE = "deployments"
    TITLE = "Deployments"
    SHORT_TITLE = "Deploys"
    POLLS = False
    AUTO_FOCUS = "#deployments"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("g", "build_log", "Build log"),
        Binding("b", "rollback", "Roll back"),
        Binding("d", "redeploy", "Redeploy"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deployments: dict[str, dict[str, Any]] = {}
        # True from the subscription's first answer (what is in progress) until it drops.
        self.live = False

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="filter: words, or service: owner: status:", id="filter")
        table: DataTable[Text] = DataTable(id="deployments", cursor_type="row")
        table.add_columns("#", "Service", "Owner", "Component", "Status", "Message")
        yield table
        log = RichLog(id="build-log", wrap=True, markup=False, max_lines=KEPT_LOG_LINES)
        log.border_title = "Build log (enter or g)"
        yield log

    def on_mount(self) -> None:
        super().on_mount()
        self.follow_activity()

    async def load(self) -> None:
        data = await self.ask(queries.DEPLOYMENTS)
        listed = {item["deployment"]["id"]: item for item in data["recentDeployments"]["items"]}
        newest = max(map(int, listed), default=0)
        # The subscription may have sent a change, or a new deployment, while the list was on
        # its way: what it sent is the newer.
        for key, known in self.deployments.items():
            if int(key) > newest or (key in listed and _later(known, listed[key])):
                listed[key] = known
        self.deployments = listed
        self.show_deployments()

    @work(group="activity")
    async def follow_activity(self) -> None:
        """Every change of any deployment, pushed by the API, for as long as the screen lives;
        after a dropped connection, subscribes again (the list is reloaded meanwhile)."""
        await self.console.ready.wait()
        while True:
            try:
                async for data in self.console.api.subscribe(queries.DEPLOYMENT_ACTIVITY):
                    self.live = True
                    self.console.connection_restored()
                    self.remember(data["deploymentActivity"])
                    self.show_deployments()
            except NoMatches:
                return  # the screen closed while a change was on the way
            except Unreachable as error:
                self.console.connection_lost(error)
            except DigiError as error:
                self.notify(error.message, title="Live updates stopped", severity="error")
                return
            finally:
                self.live = False
            await asyncio.sleep(self.console.options.retry_seconds)

    def remember(self, item: dict[str, Any]) -> None:
        key = item["deployment"]["id"]
        known = self.deployments.get(key)
        if known is None or not _later(known, item):
            self.deployments[key] = item
        # A console left open for days must not grow without end: the oldest go.
        for old in sorted(self.deployments, key=int)[:-KEPT_DEPLOYMENTS]:
            del self.deployments[old]

    def show_deployments(self) -> None:
        table = self.query_one("#deployments", DataTable)
        selected = self.selected()
        text = self.query_one("#filter", Input).value
        table.clear()
        for key in sorted(self.deployments, key=int, reverse=True):
            item = self.deployments[key]
            deployment = item["deployment"]
            fields = {
                "service": item["serviceName"],
                "owner": item["ownerEmail"],
                "component": deployment["component"],
                "status": deployment["status"].lower(),
                "message": deployment["message"],
            }
            if matches(text, fields):
                table.add_row(*plain(key, *fields.values()), key=key)
        if selected is not None and selected["deployment"]["id"] in table.rows:
            table.move_cursor(row=table.get_row_index(selected["deployment"]["id"]))

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#deployments", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.deployments.get(key or "")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_deployments()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_focus_table()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#deployments", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_build_log()  # enter on a row

    def action_build_log(self) -> None:
        item = self.selected()
        if item is not None:
            self.follow_build(item)

    @work(exclusive=True, group="build-log")
    async def follow_build(self, item: dict[str, Any]) -> None:
        """The deployment's log as the API kept it, then, while it is in progress, live;
        after a dropped connection, on from the last line shown."""
        deployment = item["deployment"]
        pane = self.query_one("#build-log", RichLog)
        pane.clear()
        pane.border_title = (
            f"Log of #{deployment['id']}: {deployment['component']} of {item['serviceName']}"
        )
        log = DeploymentLog(self.console.api, deployment["id"])
        status, shown = "", 0
        while True:
            try:
                async for line in log.lines():
                    for text in styled(line, status):
                        pane.write(text)
                    status = line["status"]
                    shown += 1
                break
            except NoMatches:
                return  # the screen closed
            except Unreachable as error:
                self.console.connection_lost(error)
            except DigiError as error:
                pane.write(f"cannot show this deployment's log: {error.message}")
                return
            await asyncio.sleep(self.console.options.retry_seconds)
        if not shown:
            pane.write("no log was kept for this deployment")
        if log.deployment.get("error"):
            pane.write(Text(f"failed: {log.deployment['error']}", style="bold red"))

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

"""Services of every user, filterable, with a detail pane and actions on their containers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from digi_core.errors import DigiError
from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.filtering import matches
from digi_tui.messages import OpenLogs
from digi_tui.screens.base import ConsoleScreen


class ServicesScreen(ConsoleScreen):
    MODE = "services"
    TITLE = "Services"
    SHORT_TITLE = "Services"
    AUTO_FOCUS = "#services"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("c", "next_component", "Comp"),
        Binding("r", "restart", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("d", "redeploy", "Deploy"),
        Binding("l", "logs", "Logs"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.services: list[dict[str, Any]] = []
        self.detail: dict[str, Any] | None = None
        self.component_index = 0

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="filter: words, or owner: name: status:", id="filter")
        table: DataTable[Text] = DataTable(id="services", cursor_type="row")
        table.add_columns("Name", "Owner", "Status", "URL")
        yield table
        yield Static("Select a service to see its components.", id="service-detail", markup=False)

    async def load(self) -> None:
        data = await self.ask(queries.SERVICES)
        emails = {user["id"]: user["email"] for user in data["users"]["items"]}
        self.services = [
            {**service, "owner": emails.get(service["ownerId"], f"user {service['ownerId']}")}
            for service in data["services"]["items"]
        ]
        self.show_services()

    def show_services(self) -> None:
        table = self.query_one("#services", DataTable)
        selected = self.selected_id()
        text = self.query_one("#filter", Input).value
        table.clear()
        for service in self.services:
            fields = {"name": service["name"], "owner": service["owner"]}
            fields["status"] = service["status"].lower()
            if matches(text, fields):
                table.add_row(
                    *plain(
                        service["name"],
                        service["owner"],
                        fields["status"],
                        service["url"] or "",
                    ),
                    key=service["id"],
                )
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))

    def selected_id(self) -> str | None:
        table = self.query_one("#services", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_services()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#services", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#services", DataTable).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and (self.detail or {}).get("id") != event.row_key.value:
            self.component_index = 0
            self.show_detail(event.row_key.value)

    @work(exclusive=True, group="detail")
    async def show_detail(self, service_id: str) -> None:
        pane = self.query_one("#service-detail", Static)
        try:
            self.detail = (await self.ask(queries.SERVICE, {"id": service_id}))["service"]
        except DigiError as error:
            pane.update(f"Cannot show this service: {error.message}")
            return
        self.render_detail()

    def render_detail(self) -> None:
        service = self.detail
        if service is None:
            return
        lines = [f"{service['name']} ({service['status'].lower()}) {service['url'] or ''}"]
        for index, component in enumerate(service["components"]):
            marker = "▶" if index == self.component_index else " "
            source = component["image"] or component["type"].lower()
            lines.append(f" {marker} {component['name']} ({source}) {component['url']}")
        keys = sorted(
            "/".join(filter(None, (variable["component"], variable["key"])))
            for variable in service["envVars"]
        )
        lines.append("Env: " + (", ".join(keys) if keys else "none") + " (values hidden)")
        for deployment in service["deployments"][:5]:
            lines.append(
                f"  #{deployment['id']} {deployment['component']} "
                f"{deployment['status'].lower()} {deployment['message']}"
            )
        # Names and messages are the users' text, not markup.
        self.query_one("#service-detail", Static).update(Text("\n".join(lines)))

    def selected_component(self) -> tuple[dict[str, Any], str] | None:
        if self.detail is None or not self.detail["components"]:
            self.notify("Select a service with components first", severity="warning")
            return None
        components = self.detail["components"]
        return self.detail, components[self.component_index % len(components)]["name"]

    def action_next_component(self) -> None:
        if self.detail and self.detail["components"]:
            self.component_index = (self.component_index + 1) % len(self.detail["components"])
            self.render_detail()

    def _container_action(self, verb: tuple[str, str, str], document: str) -> None:
        """``verb``: the action, its -ing and its past form, as the operator reads them."""
        target = self.selected_component()
        if target is None:
            return
        service, component = target
        variables = {"service": service["id"], "container": component}

        async def call() -> str:
            await self.ask(document, variables)
            return f"{verb[2]} {component} of {service['name']}"

        self.confirm_then(
            f"{verb[0]} {component} of {service['name']}?", f"{verb[1]} {component}", call
        )

    def action_restart(self) -> None:
        self._container_action(("Restart", "Restarting", "Restarted"), queries.RESTART_CONTAINER)

    def action_stop(self) -> None:
        self._container_action(("Stop", "Stopping", "Stopped"), queries.STOP_CONTAINER)

    def action_redeploy(self) -> None:
        if self.detail is None:
            return
        service = self.detail

        async def call() -> str:
            job = (await self.ask(queries.DEPLOY_SERVICE, {"service": service["id"]}))[
                "deployService"
            ]
            return f"Deploying {service['name']} (job {job['jobId']})"

        self.confirm_then(f"Deploy {service['name']} again?", f"Deploying {service['name']}", call)

    def action_logs(self) -> None:
        target = self.selected_component()
        if target is not None:
            service, component = target
            self.post_message(OpenLogs(service["id"], service["name"], component))

"""Users: search; suspend, unsuspend, change the plan of and delete, each after a
confirmation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input

from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.screens.base import ConsoleScreen


class UsersScreen(ConsoleScreen):
    MODE = "users"
    TITLE = "Users"
    SHORT_TITLE = "Users"
    AUTO_FOCUS = "#users"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("s", "suspend", "Suspend"),
        Binding("u", "unsuspend", "Unsuspend"),
        Binding("p", "plan", "Plan"),
        Binding("x", "delete", "Delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, dict[str, Any]] = {}

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="search by email or name", id="search")
        table: DataTable[Text] = DataTable(id="users", cursor_type="row")
        table.add_columns("Email", "Name", "Role", "Plan", "State")
        yield table

    async def load(self) -> None:
        search = self.query_one("#search", Input).value.strip() or None
        data = await self.ask(queries.USERS, {"search": search})
        self.users = {user["id"]: user for user in data["users"]["items"]}
        table = self.query_one("#users", DataTable)
        selected = self.selected()
        table.clear()
        for user in self.users.values():
            table.add_row(
                *plain(
                    user["email"],
                    user["name"],
                    user["role"].lower(),
                    user["plan"].lower(),
                    "suspended" if user["suspended"] else "active",
                ),
                key=user["id"],
            )
        if selected is not None and selected["id"] in self.users:
            table.move_cursor(row=table.get_row_index(selected["id"]))

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#users", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.users.get(key or "")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_data()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_focus_table()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#users", DataTable).focus()

    def _act(self, question: str, label: str, document: str, done: str) -> None:
        user = self.selected()
        if user is None:
            return

        async def call() -> str:
            await self.ask(document, {"id": user["id"]})
            return f"{done} {user['email']}"

        self.confirm_then(f"{question} {user['email']}?", f"{label} {user['email']}", call)

    def action_suspend(self) -> None:
        self._act("Suspend", "Suspending", queries.SUSPEND_USER, "Suspended")

    def action_unsuspend(self) -> None:
        self._act("Lift the suspension of", "Unsuspending", queries.UNSUSPEND_USER, "Unsuspended")

    def action_plan(self) -> None:
        """Free to Pro and back, as billing would; Pro's extra storage blocks stay."""
        user = self.selected()
        if user is None:
            return
        plan = "FREE" if user["plan"] == "PRO" else "PRO"

        async def call() -> str:
            await self.ask(queries.SET_USER_PLAN, {"id": user["id"], "plan": plan})
            return f"{user['email']} is on the {plan.lower()} plan"

        self.confirm_then(
            f"Move {user['email']} to the {plan.lower()} plan?",
            f"Moving {user['email']} to {plan.lower()}",
            call,
        )

    def action_delete(self) -> None:
        self._act("Delete, with all their services,", "Deleting", queries.DELETE_USER, "Deleted")

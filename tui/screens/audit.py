"""Audit log: a live tail of what everyone did, newest first, filtered as the operator types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input

from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.filtering import matches
from digi_tui.screens.base import ConsoleScreen


class AuditScreen(ConsoleScreen):
    MODE = "audit"
    TITLE = "Audit log"
    SHORT_TITLE = "Audit"
    AUTO_FOCUS = "#audit"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="filter: words, or actor: action: target: outcome:", id="filter")
        table: DataTable[Text] = DataTable(id="audit", cursor_type="row")
        table.add_columns("Time", "Actor", "Action", "Target", "Outcome")
        yield table

    async def load(self) -> None:
        self.entries = (await self.ask(queries.AUDIT_LOGS))["auditLogs"]["items"]
        self.show_entries()

    def show_entries(self) -> None:
        text = self.query_one("#filter", Input).value
        table = self.query_one("#audit", DataTable)
        table.clear()
        for entry in self.entries:
            target = " ".join(filter(None, (entry["targetType"], entry["targetId"])))
            fields = {
                "actor": entry["actorEmail"] or "",
                "action": entry["action"],
                "target": target,
                "outcome": entry["outcome"].lower(),
            }
            if matches(text, fields):
                time = entry["createdAt"][:19].replace("T", " ")
                table.add_row(*plain(time, *fields.values()), key=entry["id"])

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_entries()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_focus_table()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#audit", DataTable).focus()

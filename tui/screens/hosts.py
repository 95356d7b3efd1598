"""Hosts and nodes: where services run, their status and, when the provider says, resources;
the selected VM's usage over the last hour (``vmStats``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import work
from textual.widget import Widget
from textual.widgets import DataTable, Sparkline, Static

from digi_core.errors import DigiError
from digi_tui import queries
from digi_tui.cells import plain
from digi_tui.screens.base import ConsoleScreen

GIB = 1024**3


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _usage(used: float | None, total: float | None) -> str:
    if used is None:
        return "-"
    if total:
        return f"{used / GIB:.1f}/{total / GIB:.1f} GiB"
    return f"{used / GIB:.1f} GiB"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} KiB/s"


class HostsScreen(ConsoleScreen):
    MODE = "hosts"
    TITLE = "Hosts"
    SHORT_TITLE = "Hosts"

    def compose_body(self) -> Iterable[Widget]:
        table: DataTable[Text] = DataTable(id="hosts", cursor_type="row")
        table.add_columns("Name", "Provider", "Status", "CPU", "RAM", "Disk", "VMs")
        yield table
        yield Static("", id="host-stats", markup=False)
        sparkline = Sparkline([], id="host-cpu")
        sparkline.display = False  # until a VM with statistics is selected
        yield sparkline

    async def load(self) -> None:
        servers: list[dict[str, Any]] = (await self.ask(queries.SERVERS))["servers"]
        table = self.query_one("#hosts", DataTable)
        table.clear()
        for server in servers:
            cpu = _fraction(server["cpuFraction"])
            if server["cpus"]:
                cpu += f" of {server['cpus']}"
            table.add_row(
                *plain(
                    server["name"],
                    server["provider"],
                    server["status"],
                    cpu,
                    _usage(server["memoryBytes"], server["memoryTotalBytes"]),
                    _usage(server["diskBytes"], server["diskTotalBytes"]),
                    "-" if server["vmCount"] is None else str(server["vmCount"]),
                ),
                key=server["id"],
            )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self.show_stats(event.row_key.value)

    @work(exclusive=True, group="stats")
    async def show_stats(self, vm_id: str) -> None:
        detail = self.query_one("#host-stats", Static)
        sparkline = self.query_one("#host-cpu", Sparkline)
        try:
            stats = (await self.ask(queries.VM_STATS, {"vmId": vm_id}))["vmStats"]
        except DigiError as error:
            detail.update(f"{vm_id}: no statistics ({error.message})")
            sparkline.display = False
            return
        samples = stats["samples"]
        if not samples:
            detail.update(f"{vm_id}: no statistics yet")
            sparkline.display = False
            return
        last = samples[-1]
        detail.update(
            f"{vm_id} at {last['time'][11:16]}: CPU {_fraction(last['cpuFraction'])}, "
            f"RAM {_usage(last['memoryBytes'], None)}, disk {_usage(last['diskBytes'], None)}, "
            f"network in {_rate(last['networkInBytes'])} out {_rate(last['networkOutBytes'])}; "
            f"CPU over the last hour ({len(samples)} samples):"
        )
        sparkline.data = [sample["cpuFraction"] or 0.0 for sample in samples]
        sparkline.display = True

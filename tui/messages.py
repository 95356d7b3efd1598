"""Messages the console's widgets and screens send each other."""

from __future__ import annotations

from textual.message import Message


class OpenLogs(Message):
    """Show the live output of ``component`` of service ``service_id`` on the Logs screen."""

    def __init__(self, service_id: str, service_name: str, component: str) -> None:
        super().__init__()
        self.service_id = service_id
        self.service_name = service_name
        self.component = component

"""The banner that says the API stopped answering and that the console is reconnecting."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.widgets import Static

if TYPE_CHECKING:
    from digi_tui.app import DigiConsole


class ConnectionBanner(Static):
    DEFAULT_CSS = """
    ConnectionBanner {
        display: none; height: auto; background: $error; color: $text; padding: 0 1;
    }
    ConnectionBanner.-lost { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "connected", self._show, init=True)

    def _show(self, connected: bool) -> None:
        console = cast("DigiConsole", self.app)
        self.set_class(not connected, "-lost")
        if not connected:
            self.update(f"Connection lost: {console.lost_reason}. Reconnecting…")

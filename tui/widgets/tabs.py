"""One line naming every screen with its key; the current one stands out."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ScreenTabs(Static):
    DEFAULT_CSS = """
    ScreenTabs { height: 1; background: $panel; color: $text-muted; }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def on_mount(self) -> None:
        from digi_tui.screens import BUILT_IN

        text = Text(no_wrap=True, overflow="ellipsis")
        for key, (mode, screen) in enumerate(BUILT_IN.items(), start=1):
            style = "bold reverse" if mode == self.current else ""
            text.append(f" {key} {screen.SHORT_TITLE} ", style=style)
        self.update(text)

"""Logs: the live output of one container, with pause, search and follow."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Input, RichLog, Static

from digi_core.cli.client import Unreachable
from digi_core.errors import DigiError
from digi_tui import queries
from digi_tui.screens.base import ConsoleScreen

KEPT_LINES = 5000


class LogsScreen(ConsoleScreen):
    MODE = "logs"
    TITLE = "Logs"
    SHORT_TITLE = "Logs"
    POLLS = False
    AUTO_FOCUS = "#log"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause"),
        Binding("f", "follow", "Follow"),
        Binding("slash", "search", "Search"),
        Binding("escape", "focus_log", "Log", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.paused = False
        self.target = ""

    def compose_body(self) -> Iterable[Widget]:
        yield Static(
            "Pick a service on the Services screen (3) and press l to follow its logs.",
            id="log-target",
            markup=False,
        )
        yield Input(placeholder="search the lines", id="search")
        yield RichLog(id="log", wrap=True, markup=False, max_lines=KEPT_LINES)

    def follow_container(self, service_id: str, service_name: str, component: str) -> None:
        self.target = f"{component} of {service_name}"
        self.lines.clear()
        self.query_one("#log", RichLog).clear()
        self._show_state()
        self.follow(service_id, component)

    @work(exclusive=True, group="logs")
    async def follow(self, service_id: str, component: str) -> None:
        await self.console.ready.wait()
        variables = {
            "service": service_id,
            "container": component,
            "tail": self.console.options.log_tail,
        }
        while True:
            try:
                async for data in self.console.api.subscribe(queries.CONTAINER_LOGS, variables):
                    self.console.connection_restored()
                    self.add_line(data["containerLogs"]["line"])
                return  # the container's output ended
            except NoMatches:
                return  # the screen closed while a line was on the way
            except Unreachable as error:
                self.console.connection_lost(error)
            except DigiError as error:
                self.query_one("#log-target", Static).update(
                    f"Cannot follow {self.target}: {error.message}"
                )
                return
            # Reconnecting asks for no tail again: the lines already shown stay.
            variables["tail"] = 0
            await asyncio.sleep(self.console.options.retry_seconds)

    def add_line(self, line: str) -> None:
        self.lines.append(line)
        if not self.paused and self._wanted(line):
            self.query_one("#log", RichLog).write(self._styled(line))

    def _wanted(self, line: str) -> bool:
        search = self.query_one("#search", Input).value.lower()
        return not search or search in line.lower()

    def _styled(self, line: str) -> Text:
        text = Text(line)
        search = self.query_one("#search", Input).value
        if search:
            text.highlight_words([search], style="reverse", case_sensitive=False)
        return text

    def _redraw(self) -> None:
        log = self.query_one("#log", RichLog)
        log.clear()
        for line in self.lines:
            if self._wanted(line):
                log.write(self._styled(line))

    def _show_state(self) -> None:
        log = self.query_one("#log", RichLog)
        states = ["paused" if self.paused else "live", "following" if log.auto_scroll else ""]
        self.query_one("#log-target", Static).update(
            f"Logs of {self.target} ({', '.join(s for s in states if s)})"
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        self._redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_focus_log()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._redraw()  # what arrived while paused
        self._show_state()

    def action_follow(self) -> None:
        log = self.query_one("#log", RichLog)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self._show_state()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_log(self) -> None:
        self.query_one("#log", RichLog).focus()

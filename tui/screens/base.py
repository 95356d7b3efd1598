"""What every console screen shares: the tabs, the banner, loading, and confirmed actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from digi_core.cli.client import Unreachable
from digi_core.errors import DigiError
from digi_tui.screens.confirm import ConfirmModal
from digi_tui.widgets.banner import ConnectionBanner
from digi_tui.widgets.progress import ActionStatus
from digi_tui.widgets.tabs import ScreenTabs

if TYPE_CHECKING:
    from digi_tui.app import DigiConsole

Call = Callable[[], Awaitable[str]]


class ConsoleScreen(Screen[None]):
    """A screen that loads its data from the API when shown, every few seconds, and again
    after a reconnect; ``load`` does the asking."""

    MODE: ClassVar[str] = ""
    SHORT_TITLE: ClassVar[str] = ""
    # Screens fed by a subscription need no polling.
    POLLS: ClassVar[bool] = True

    @property
    def console(self) -> DigiConsole:
        return cast("DigiConsole", self.app)

    def compose(self) -> ComposeResult:
        yield ScreenTabs(self.MODE)
        yield ConnectionBanner(markup=False)
        yield from self.compose_body()
        yield ActionStatus(markup=False)
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.refresh_data()
        if self.POLLS:
            self.set_interval(self.console.options.poll_seconds, self.refresh_data)
        self.watch(self.app, "connected", self._reconnected, init=False)

    def _reconnected(self, connected: bool) -> None:
        if connected:
            self.refresh_data()

    @work(exclusive=True, group="load")
    async def refresh_data(self) -> None:
        await self.console.ready.wait()
        try:
            await self.load()
        except NoMatches:
            pass  # the screen closed while its data was on the way
        except Unreachable as error:
            self.console.connection_lost(error)
        except DigiError as error:
            self.notify(error.message, title="The API refused", severity="error")

    async def load(self) -> None:
        """Ask the API for this screen's data and show it."""

    async def ask(self, document: str, variables: dict[str, Any] | None = None) -> Any:
        return await self.console.api.query(document, variables)

    def confirm_then(self, question: str, label: str, call: Call) -> None:
        """Ask first (destructive actions); on yes, run ``call`` in a worker."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.perform(label, call)

        self.app.push_screen(ConfirmModal(question), answered)

    @work(group="action")
    async def perform(self, label: str, call: Call) -> None:
        """Run an action, showing that it runs, then what it did or the API's error.

        Not exclusive: a second action must not cancel a first one already sent, which would
        leave the operator not knowing whether it happened."""
        status = self.query_one(ActionStatus)
        status.running(label)
        try:
            done = await call()
        except Unreachable as error:
            self.console.connection_lost(error)
            status.failed(label, error.message)
            return
        except DigiError as error:
            status.failed(label, error.message)
            self.notify(error.message, title=f"{label} failed", severity="error")
            return
        status.done(done)
        self.refresh_data()

"""The operator console: a Textual app that watches and steers Digi through its GraphQL API."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from digi_core.cli.client import ApiClient, Unreachable
from digi_core.errors import DigiError, Forbidden
from digi_tui import queries
from digi_tui.messages import OpenLogs
from digi_tui.options import ConsoleOptions
from digi_tui.palette import ScreensProvider
from digi_tui.screens import BUILT_IN
from digi_tui.screens.logs import LogsScreen

REFUSED_EXIT_CODE = Forbidden.exit_code


def refusal(api_url: str, email: str, role: str) -> str:
    """What the operator reads when the token is not an admin's."""
    return (
        f"{api_url} signed you in as {email} ({role.lower()}), but the console is for the "
        "platform's admins: sign in with an admin's token (`digi login`, or DIGI_TOKEN)"
    )


class DigiConsole(App[None]):
    """The console of one Digi API, signed in with an admin's token."""

    CSS_PATH = "app.tcss"
    TITLE = "Digi console"
    MODES = dict(BUILT_IN)
    DEFAULT_MODE = "overview"
    COMMANDS = App.COMMANDS | {ScreensProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(key), f"switch_mode('{mode}')", screen.SHORT_TITLE, show=False)
            for key, (mode, screen) in enumerate(BUILT_IN.items(), start=1)
        ),
        Binding("q", "quit", "Quit"),
        # Leaves a plugin's screen (pushed over a built-in one); the built-in screens' own
        # escape, where they have one, comes first.
        Binding("escape", "back", "Back", show=False),
    ]

    connected: reactive[bool] = reactive(True)
    """False while the API does not answer; screens show a banner and reconnect."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        token_source: str = "",
        *,
        plugin_screens: dict[str, type[Screen[Any]]] | None = None,
        options: ConsoleOptions | None = None,
    ) -> None:
        super().__init__()
        self.api_url = api_url
        self.options = options or ConsoleOptions()
        self.plugin_screens = dict(plugin_screens or {})
        self.api = ApiClient(api_url, token, token_source)
        self.ready = asyncio.Event()
        self.signed_in_as = ""
        self.lost_reason = ""
        self.refusal = ""
        self.sub_title = api_url

    async def on_mount(self) -> None:
        await self.api.__aenter__()
        self.sign_in()
        self.watch_health()

    async def on_unmount(self) -> None:
        await self.api.__aexit__(None, None, None)

    @work(exclusive=True, group="sign-in")
    async def sign_in(self) -> None:
        """Who the token belongs to: an admin's opens the console; anyone else's is refused."""
        while True:
            try:
                me = (await self.api.query(queries.ME))["me"]
                break
            except Unreachable as error:
                self.connection_lost(error)
                await asyncio.sleep(self.options.retry_seconds)
            except DigiError as error:
                self.refuse(error.message)
                return
        if me["role"] != "ADMIN":
            self.refuse(refusal(self.api_url, me["email"], me["role"]))
            return
        self.signed_in_as = me["email"]
        self.sub_title = f"{me['email']} @ {self.api_url}"
        self.connection_restored()
        self.ready.set()

    def refuse(self, message: str) -> None:
        self.refusal = message
        self.exit(return_code=REFUSED_EXIT_CODE, message=message)

    @work(group="health")
    async def watch_health(self) -> None:
        """Ask ``/healthz`` now and then: a dropped connection shows even on a quiet screen."""
        while True:
            try:
                await self.api.health()
            except Unreachable as error:
                self.connection_lost(error)
            else:
                self.connection_restored()
            await asyncio.sleep(
                self.options.retry_seconds if not self.connected else self.options.health_seconds
            )

    def connection_lost(self, error: DigiError) -> None:
        self.lost_reason = error.message
        self.connected = False

    def connection_restored(self) -> None:
        self.connected = True

    def open_plugin(self, title: str) -> None:
        self.push_screen(self.plugin_screens[title]())

    async def on_open_logs(self, message: OpenLogs) -> None:
        await self.switch_mode("logs")
        screen = self.screen
        if isinstance(screen, LogsScreen):
            screen.follow_container(message.service_id, message.service_name, message.component)

"""The command palette's screens: every built-in screen and those plugins registered."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from digi_tui.app import DigiConsole


class ScreensProvider(Provider):
    """``Go to Users``, ``Plugin: Billing``…: opens the screen."""

    def _entries(self) -> list[tuple[str, str, Callable[[], object]]]:
        from digi_tui.screens import BUILT_IN

        console = cast("DigiConsole", self.app)
        entries: list[tuple[str, str, Callable[[], object]]] = [
            (f"Go to {screen.TITLE}", f"key {key}", partial(console.switch_mode, mode))
            for key, (mode, screen) in enumerate(BUILT_IN.items(), start=1)
        ]
        entries += [
            (f"Plugin: {title}", "a screen a plugin added", partial(console.open_plugin, title))
            for title in console.plugin_screens
        ]
        return entries

    async def discover(self) -> Hits:
        for name, help_text, callback in self._entries():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._entries():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)

"""Screens plugins add to the console through the ``register_console_screens`` hook."""

from __future__ import annotations

from typing import Any

import pluggy


def console_screens(manager: pluggy.PluginManager) -> dict[str, Any]:
    """Title -> Textual ``Screen`` class, in registration order; a later title replaces one."""
    screens: dict[str, Any] = {}

    def register(title: str, screen_class: Any) -> None:
        screens[title] = screen_class

    manager.hook.register_console_screens(register=register)
    return screens

"""How the main screens look at 80x24 and 160x48, against the seeded platform.

snap_compare runs the app with its own event loop, so it runs in a thread: the API keeps
answering on the tests' loop meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from tests.tui.conftest import World, until

SIZES = [(80, 24), (160, 48)]


def _table_rows(table_id: str, count: int) -> Callable[[Any], bool]:
    def check(pilot: Any) -> bool:
        tables = pilot.app.screen.query(f"#{table_id}").results(DataTable)
        return any(table.row_count == count for table in tables)

    return check


def _overview_loaded(pilot: Any) -> bool:
    cards = pilot.app.screen.query("#card-hosts").results(Static)
    return any(str(card.content) == "1" for card in cards)


def _service_detail(pilot: Any) -> bool:
    panes = pilot.app.screen.query("#service-detail").results(Static)
    return any("Env:" in str(pane.content) for pane in panes)


SCREENS: dict[str, tuple[str, list[Callable[[Any], bool]]]] = {
    "overview": ("1", [_overview_loaded]),
    "services": ("3", [_table_rows("services", 3), _service_detail]),
    "deployments": ("4", [_table_rows("deployments", 3)]),
    "users": ("6", [_table_rows("users", 5)]),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
async def test_main_screens(world: World, snap_compare: Any, screen: str, size: Any) -> None:
    key, checks = SCREENS[screen]

    async def shown(pilot: Any) -> None:
        await pilot.press(key)
        for check in checks:
            await until(pilot, lambda check=check: check(pilot))
        await pilot.pause(0.2)

    app = world.console()
    assert await asyncio.to_thread(snap_compare, app, terminal_size=size, run_before=shown)

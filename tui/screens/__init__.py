"""The console's built-in screens, by mode name, in the order of their keys (1, 2, …)."""

from __future__ import annotations

from digi_tui.screens.audit import AuditScreen
from digi_tui.screens.base import ConsoleScreen
from digi_tui.screens.deployments import DeploymentsScreen
from digi_tui.screens.hosts import HostsScreen
from digi_tui.screens.logs import LogsScreen
from digi_tui.screens.overview import OverviewScreen
from digi_tui.screens.services import ServicesScreen
from digi_tui.screens.users import UsersScreen

BUILT_IN: dict[str, type[ConsoleScreen]] = {
    screen.MODE: screen
    for screen in (
        OverviewScreen,
        HostsScreen,
        ServicesScreen,
        DeploymentsScreen,
        LogsScreen,
        UsersScreen,
        AuditScreen,
    )
}

"""Routing through Caddy's JSON admin API, one Caddy per host (the master tier comes later).

On the embedded default Digi also runs and supervises this machine's Caddy (process.py).
"""

from __future__ import annotations

from collections.abc import Callable

from digi_caddy.router import CaddyRouter
from digi_core import hookimpl
from digi_core.providers import Router


@hookimpl
def register_routers(register: Callable[[Router], None]) -> None:
    register(CaddyRouter())

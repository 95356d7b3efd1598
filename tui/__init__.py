"""The operator console (Textual), a client of the GraphQL API: adds `digi console`.

Every `digi` process and `digi server` load this module as a plugin, so it must not import
Textual: the app is imported only when the command runs.
"""

from __future__ import annotations

import click

from digi_core import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    from digi_tui.command import console

    cli.add_command(console)

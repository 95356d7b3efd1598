"""The ``digi`` command: operator commands here, more added by plugins (register_commands)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from digi_core import __version__
from digi_core.config import PluginSelection
from digi_core.errors import ConfigError, DigiError
from digi_core.plugins import make_plugin_manager

error_console = Console(stderr=True, highlight=False, soft_wrap=True)


class DigiGroup(click.Group):
    """Turns Digi's typed errors into one clear line each and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            error_console.print("[red]error:[/] invalid configuration")
            for problem in error.problems:
                error_console.print(f"  {problem}", markup=False)
            sys.exit(error.exit_code)
        except DigiError as error:
            error_console.print(f"[red]error[/] [{error.code}]: ", end="")
            error_console.print(error.message, markup=False)
            sys.exit(error.exit_code)


@click.group(cls=DigiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="digi")
def cli() -> None:
    """Digi: a self-hosted Platform as a Service. Push an app, get a URL.

    \b
    Example:
      digi server            # run the API on http://127.0.0.1:4000
    """


def main() -> None:
    """Entry point of the ``digi`` console script."""
    # Importing registers the commands: operator ones, and the user ones (API clients).
    from digi_core.cli import operator, user  # noqa: F401

    try:
        manager = make_plugin_manager(PluginSelection().plugins_to_load)
    except DigiError as error:
        error_console.print(f"[red]error[/] [{error.code}]: ", end="")
        error_console.print(error.message, markup=False)
        sys.exit(error.exit_code)
    manager.hook.register_commands(cli=cli)
    cli.main(prog_name="digi", obj=manager)

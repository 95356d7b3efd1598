"""`digi console`: the operator's live console in this terminal, or in a browser (--serve)."""

from __future__ import annotations

import sys

import click
import pluggy

from digi_core.cli.client import ApiClient
from digi_core.cli.credentials import token_for
from digi_core.cli.user.common import api_option, run
from digi_core.config import PluginSelection
from digi_core.errors import Forbidden
from digi_core.plugins import make_plugin_manager
from digi_tui.plugin_screens import console_screens


async def check_admin(api_url: str, token: str | None, token_source: str) -> None:
    """Refuse before the screen is taken over: a clear line beats a flash of the console."""
    from digi_tui.app import refusal

    async with ApiClient(api_url, token, token_source) as client:
        if not token:
            raise client.unauthenticated()
        me = (await client.query("{ me { email role } }"))["me"]
    if me["role"] != "ADMIN":
        raise Forbidden(refusal(api_url, me["email"], me["role"]))


@click.command()
@api_option
@click.option("--serve", is_flag=True, help="Serve the console to a browser instead.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where --serve listens.")
@click.option("--port", default=8566, show_default=True, help="The port --serve listens on.")
@click.pass_obj
def console(
    manager: pluggy.PluginManager | None, api_url: str, serve: bool, host: str, port: int
) -> None:
    """The operator console: users, services, deployments, hosts and logs, live.

    Needs an admin's token: `digi login` as an admin, or DIGI_TOKEN.

    \b
    Example:
      digi console --api https://digi.example.com
      digi console --serve --port 8566    # the same console in a browser
    """
    token, token_source = token_for(api_url)
    run(check_admin(api_url, token, token_source))
    if serve:
        from digi_tui.serve import serve_console

        serve_console(api_url, host, port)
        return
    from digi_tui.app import DigiConsole

    if manager is None:
        manager = make_plugin_manager(PluginSelection().plugins_to_load)
    app = DigiConsole(api_url, token, token_source, plugin_screens=console_screens(manager))
    app.run()
    sys.exit(app.return_code or 0)

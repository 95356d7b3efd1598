"""``python -m digi_tui``: the console alone, as textual-serve starts it for a browser."""

from __future__ import annotations

import os
import sys

from digi_core.cli.credentials import DEFAULT_API_URL, normalised_api_url, token_for
from digi_core.config import PluginSelection
from digi_core.plugins import make_plugin_manager
from digi_tui.app import DigiConsole
from digi_tui.plugin_screens import console_screens


def main(arguments: list[str]) -> int:
    api_url = os.environ.get("DIGI_API_URL") or DEFAULT_API_URL
    if len(arguments) == 2 and arguments[0] == "--api":
        api_url = arguments[1]
    api_url = normalised_api_url(api_url)
    token, token_source = token_for(api_url)
    manager = make_plugin_manager(PluginSelection().plugins_to_load)
    app = DigiConsole(api_url, token, token_source, plugin_screens=console_screens(manager))
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

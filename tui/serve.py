"""`digi console --serve`: textual-serve runs one console per browser tab on a local port."""

from __future__ import annotations

import shlex
import sys

from textual_serve.server import Server


def serve_console(api_url: str, host: str, port: int) -> None:
    """Serve until interrupted; each browser session runs ``python -m digi_tui`` with the
    environment of this process (so DIGI_TOKEN, or the saved login, signs it in)."""
    command = shlex.join([sys.executable, "-m", "digi_tui", "--api", api_url])
    Server(command, host=host, port=port, title="Digi console").serve()

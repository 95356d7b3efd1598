"""What every user command shares: the ``--api`` and ``--json`` options, running a coroutine
with Ctrl-C as exit 130, a signed-in API client, and printing JSON or tables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digi_core.cli.client import ApiClient
from digi_core.cli.credentials import DEFAULT_API_URL, normalised_api_url, token_for

console = Console(highlight=False, soft_wrap=True)
# Notes and progress go to stderr: stdout stays what scripts read (JSON, a job id, log lines).
note_console = Console(stderr=True, highlight=False, soft_wrap=True)

INTERRUPTED_EXIT_CODE = 130
Result = TypeVar("Result")
Command = TypeVar("Command", bound=Callable[..., Any])


def api_option(command: Command) -> Command:
    """``--api URL`` (or DIGI_API_URL), handed to the command as ``api_url``, normalised."""
    return click.option(
        "--api",
        "api_url",
        envvar="DIGI_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        metavar="URL",
        help="Digi's API (or set DIGI_API_URL).",
        callback=lambda _context, _parameter, value: normalised_api_url(value),
    )(command)


def json_option(command: Command) -> Command:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


def run(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """Run the command's async part; Ctrl-C ends it with exit code 130 and no traceback."""
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        note_console.print("interrupted")
        sys.exit(INTERRUPTED_EXIT_CODE)


@contextlib.asynccontextmanager
async def signed_in(api_url: str) -> AsyncIterator[ApiClient]:
    """A client with the token from DIGI_TOKEN or `digi login`."""
    token, source = token_for(api_url)
    async with ApiClient(api_url, token, source) as client:
        yield client


async def call(api_url: str, document: str, variables: Mapping[str, Any] | None = None) -> Any:
    """One query or mutation, signed in: its ``data``."""
    async with signed_in(api_url) as client:
        return await client.query(document, variables)


def query(api_url: str, document: str, variables: Mapping[str, Any] | None = None) -> Any:
    """:func:`call` for a command with nothing else to await."""
    return run(call(api_url, document, variables))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def print_table(columns: list[str], rows: list[list[Any]], empty: str) -> None:
    """A table, or ``empty`` when there are no rows; ``None`` shows as ``-``."""
    if not rows:
        console.print(empty)
        return
    table = Table()
    for column in columns:
        # Folded, not cut: ids and URLs must stay whole to be copied.
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not markup: values come from users.
        table.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    console.print(table)

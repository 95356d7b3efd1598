"""What only happens on a terminal: prompts with defaults, the live deploy display; and the
help of every user command, with an example."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from tests.cli.conftest import Cli, on_terminal
from tests.cli.test_deploy import DIGI_TOML

USER_COMMANDS = [
    "login", "logout", "whoami", "status", "services", "env", "domains", "deploy", "up",
    "deployments", "rollback", "logs",
]  # fmt: skip


async def test_create_prompts_with_defaults_on_a_terminal(owner_cli: Cli) -> None:
    # Name, then the defaults: docker, nginx:latest, port 8000.
    result = await on_terminal(owner_cli, "services", "create", answers="typed\n\n\n\n")
    assert result.returncode == 0, result.stdout
    assert "Service name" in result.stdout and "Created service typed" in result.stdout
    [service] = (await owner_cli("services", "list", "--json")).json()
    info = (await owner_cli("services", "info", service["id"], "--json")).json()
    [web] = info["components"]
    assert (web["type"], web["image"], web["port"]) == ("DOCKER", "nginx:latest", 8000)


async def test_deploy_shows_live_progress_on_a_terminal(owner_cli: Cli) -> None:
    (owner_cli.cwd / "digi.toml").write_text(DIGI_TOML.replace("clistack", "livestack"))
    result = await on_terminal(owner_cli, "deploy", "--only", "api")
    assert result.returncode == 0, result.stdout
    assert "api │ waiting for the health check" in result.stdout  # the messages above the table
    assert "RUNNING" in result.stdout and "livestack-" in result.stdout


def test_every_user_command_shows_an_example() -> None:
    from digi_core.cli import cli, user  # noqa: F401 - registers the user commands

    def commands(group: click.Group, names: list[str]) -> list[click.Command]:
        found = []
        for name in names:
            command = group.commands[name]
            found.append(command)
            if isinstance(command, click.Group):
                found += commands(command, list(command.commands))
        return found

    for command in commands(cli, USER_COMMANDS):
        assert "Example:" in (command.help or ""), command.name
    assert "Exit codes:" in (cli.epilog or "") and "_DIGI_COMPLETE=bash_source" in cli.epilog


def test_the_user_commands_import_no_models_and_no_database() -> None:
    code = (
        "import json, sys\n"
        "import digi_core.cli.user\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'tortoise' "
        "or m in ('digi_core.models', 'digi_core.db', 'digi_core.accounts'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []

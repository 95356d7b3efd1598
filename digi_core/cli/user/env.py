"""`digi env`: a service's environment variables, listed masked, set and unset."""

from __future__ import annotations

from pathlib import Path

import click

from digi_core.cli import cli
from digi_core.cli.user.common import (
    api_option,
    console,
    json_option,
    print_json,
    print_table,
    query,
)
from digi_core.errors import BadUserInput

MASK = "********"
LIST = "query($id: ID!) { service(id: $id) { name envVars { key value component } } }"
SET = (
    "mutation($id: ID!, $vars: [EnvVarInput!]!, $component: String) { setEnvVars("
    "serviceId: $id, vars: $vars, component: $component) { key } }"
)
UNSET = (
    "mutation($id: ID!, $keys: [String!]!, $component: String) { deleteEnvVars("
    "serviceId: $id, keys: $keys, component: $component) }"
)

component_option = click.option(
    "--component", help="A component's own variables (default: the whole service's)."
)


@cli.group()
def env() -> None:
    """List, set and unset a service's environment variables.

    \b
    Example:
      digi env set 12 DEBUG=1 --from-file .env
    """


@env.command("list")
@click.argument("service_id")
@click.option("--reveal", is_flag=True, help="Show the values (masked otherwise).")
@api_option
@json_option
def list_env(api_url: str, service_id: str, reveal: bool, as_json: bool) -> None:
    """List a service's variables, values masked unless --reveal.

    JSON: a list of {key, value, component}; value is null unless --reveal, component is
    null for a service-wide variable.

    \b
    Example:
      digi env list 12 --reveal
    """
    variables = query(api_url, LIST, {"id": service_id})["service"]["envVars"]
    if not reveal:
        variables = [{**variable, "value": None} for variable in variables]
    if as_json:
        print_json(variables)
        return
    print_table(
        ["key", "value", "component"],
        [
            [item["key"], item["value"] if reveal else MASK, item["component"] or "(all)"]
            for item in variables
        ],
        "No variables: set some with `digi env set`.",
    )


@env.command("set")
@click.argument("service_id")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .env file of KEY=VALUE lines (those given as arguments win).",
)
@component_option
@api_option
def set_env(
    api_url: str,
    service_id: str,
    assignments: tuple[str, ...],
    from_file: Path | None,
    component: str | None,
) -> None:
    """Set variables; the service's next deploy uses them.

    \b
    Example:
      digi env set 12 DEBUG=1 "GREETING=hello world"
      digi env set 12 --from-file .env --component web
    """
    values = read_dotenv(from_file) if from_file else {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key:
            raise BadUserInput(f"{assignment!r} is not KEY=VALUE")
        values[key] = value
    if not values:
        raise click.UsageError("give KEY=VALUE arguments or --from-file")
    variables = [{"key": key, "value": value} for key, value in values.items()]
    query(api_url, SET, {"id": service_id, "vars": variables, "component": component})
    where = f"component {component}" if component else "the service"
    console.print(f"Set {', '.join(values)} on {where}.", markup=False)


@env.command("unset")
@click.argument("service_id")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@component_option
@api_option
def unset_env(api_url: str, service_id: str, keys: tuple[str, ...], component: str | None) -> None:
    """Delete variables by key.

    \b
    Example:
      digi env unset 12 DEBUG GREETING
    """
    deleted = query(api_url, UNSET, {"id": service_id, "keys": list(keys), "component": component})
    console.print(f"Deleted {deleted['deleteEnvVars']} variable(s).")


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, comments and ``export`` are skipped, quotes removed."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        if not equals or not key.strip():
            raise BadUserInput(f"{path}:{number}: not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values

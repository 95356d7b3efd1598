"""`digi services`: list, create, show and delete your services."""

from __future__ import annotations

import sys
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

COMPONENT_TYPES = ("docker", "github", "upload", "postgres", "redis")
# Types whose component is an app listening on a port (the databases have their own).
APP_TYPES = ("docker", "github", "upload")
DEFAULT_PORT = 8000

SERVICE_FIELDS = "id name slug status url createdAt components { id name type url }"
LIST = (
    "query($limit: Int!, $search: String) { services(limit: $limit, search: $search) "
    f"{{ totalCount items {{ {SERVICE_FIELDS} }} }} }}"
)
INFO = """query($id: ID!) { service(id: $id) {
  id name slug status url createdAt updatedAt
  components { id name type image repoUrl branch port healthcheckPath url isPrimary }
  deployments(limit: 5) { id jobId component status message createdAt }
} }"""
CREATE = (
    "mutation($name: String!, $components: [ComponentInput!]!) { createService(name: $name, "
    f"components: $components) {{ {SERVICE_FIELDS} }} }}"
)
DELETE = (
    "mutation($id: ID!, $confirm: String!) { deleteService(id: $id, confirm: $confirm) "
    "{ removed } }"
)


@cli.group()
def services() -> None:
    """List, create, show and delete your services.

    \b
    Example:
      digi services list --json
    """


@services.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--search", help="Only services whose name contains this.")
@api_option
@json_option
def list_services(api_url: str, limit: int, search: str | None, as_json: bool) -> None:
    """List your services, newest first.

    JSON: a list of {id, name, slug, status, url, createdAt, components: [{id, name, type,
    url}]}.

    \b
    Example:
      digi services list
      digi services list --json | jq -r '.[].id'
    """
    page = query(api_url, LIST, {"limit": limit, "search": search})["services"]
    if as_json:
        print_json(page["items"])
        return
    rows = [
        [
            item["id"],
            item["name"],
            item["status"],
            ", ".join(component["name"] for component in item["components"]),
            item["url"],
        ]
        for item in page["items"]
    ]
    print_table(
        ["id", "name", "status", "components", "url"],
        rows,
        "No services yet: create one with `digi services create` or `digi deploy`.",
    )
    if page["totalCount"] > len(rows):
        console.print(f"{len(rows)} of {page['totalCount']}: use --limit or --search")


@services.command()
@click.option("--name", help="The service's name.")
@click.option("--component", default="web", show_default=True, help="First component's name.")
@click.option(
    "--type", "component_type", type=click.Choice(COMPONENT_TYPES), help="Component type [docker]."
)
@click.option("--image", help="Docker image (docker), e.g. nginx:1.27.")
@click.option("--repo", help="Git repository URL (github).")
@click.option("--branch", help="Branch to build (github; default main).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help=f"Port the app listens on [{DEFAULT_PORT}]."
)
@click.option("--healthcheck", help="HTTP path that answers once the app is ready, e.g. /health.")
@api_option
@json_option
def create(
    api_url: str,
    name: str | None,
    component: str,
    component_type: str | None,
    image: str | None,
    repo: str | None,
    branch: str | None,
    port: int | None,
    healthcheck: str | None,
    as_json: bool,
) -> None:
    """Create a service with one component; nothing runs until you deploy it.

    On a terminal, what the options leave out is prompted for (with defaults). Otherwise the
    options say it all: --name, and --image for a docker component or --repo for a github
    one. JSON: the service as `services list --json` shows one.

    \b
    Example:
      digi services create
      digi services create --name shop --image nginx:1.27 --port 80
      digi services create --name api --type github --repo https://github.com/acme/api
    """
    interactive = sys.stdin.isatty()
    if name is None:
        if not interactive:
            raise click.UsageError("--name is needed when stdin is not a terminal")
        name = click.prompt("Service name", default=Path.cwd().name)
    if component_type is None:
        component_type = (
            click.prompt("Component type", type=click.Choice(COMPONENT_TYPES), default="docker")
            if interactive
            else "docker"
        )
    if component_type == "docker" and image is None and interactive:
        image = click.prompt("Docker image", default="nginx:latest")
    if component_type == "github" and repo is None and interactive:
        repo = click.prompt("Git repository URL")
    if component_type in APP_TYPES and port is None:
        port = click.prompt("Port", default=DEFAULT_PORT, type=int) if interactive else DEFAULT_PORT
    spec = {
        "name": component,
        "type": component_type.upper(),
        "image": image,
        "repoUrl": repo,
        "branch": branch,
        "port": port,
        "healthcheckPath": healthcheck,
    }
    created = query(api_url, CREATE, {"name": name, "components": [spec]})["createService"]
    if as_json:
        print_json(created)
        return
    console.print(f"Created service {created['name']} (id {created['id']}).", markup=False)
    for item in created["components"]:
        console.print(f"  {item['name']}: {item['url']}", markup=False)
    console.print(f"Deploy it with `digi deploy --service {created['id']}`.", markup=False)


@services.command()
@click.argument("service_id")
@api_option
@json_option
def info(api_url: str, service_id: str, as_json: bool) -> None:
    """Show a service: its components and recent deployments.

    JSON fields: id, name, slug, status, url, createdAt, updatedAt, components: [{id, name,
    type, image, repoUrl, branch, port, healthcheckPath, url, isPrimary}], deployments (the
    5 newest): [{id, jobId, component, status, message, createdAt}].

    \b
    Example:
      digi services info 12
    """
    service = query(api_url, INFO, {"id": service_id})["service"]
    if as_json:
        print_json(service)
        return
    console.print(
        f"{service['name']} (id {service['id']}, {service['slug']}): {service['status']}",
        markup=False,
    )
    print_table(
        ["component", "type", "source", "port", "url"],
        [
            [
                item["name"] + (" (primary)" if item["isPrimary"] else ""),
                item["type"],
                item["image"] or item["repoUrl"],
                item["port"],
                item["url"],
            ]
            for item in service["components"]
        ],
        "No components.",
    )
    print_table(
        ["deployment", "component", "status", "message", "created"],
        [
            [item["id"], item["component"], item["status"], item["message"], item["createdAt"]]
            for item in service["deployments"]
        ],
        "Not deployed yet.",
    )


@services.command()
@click.argument("service_id")
@click.option("--yes", is_flag=True, help="Do not ask to type the service's name.")
@api_option
def delete(api_url: str, service_id: str, yes: bool) -> None:
    """Delete a service and everything it runs, its data volumes included.

    Asks you to type the service's name unless --yes; prints what was removed.

    \b
    Example:
      digi services delete 12
      digi services delete 12 --yes
    """
    name = query(api_url, "query($id: ID!) { service(id: $id) { name } }", {"id": service_id})[
        "service"
    ]["name"]
    if not yes:
        typed = click.prompt(f"This deletes {name} and its data. Type its name to confirm")
        if typed.strip() != name:
            raise BadUserInput(f"you typed {typed.strip()!r}, not {name!r}: nothing was deleted")
    removed = query(api_url, DELETE, {"id": service_id, "confirm": name})["deleteService"]
    console.print(f"Deleted {name}. Removed:", markup=False)
    for item in removed["removed"]:
        console.print(f"  {item}", markup=False)

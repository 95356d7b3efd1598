"""Deploying: `digi deploy` (a digi.toml), `digi up` (this directory, uploaded), `digi rollback`
and `digi deployments`. Deploys are followed live until every component is final."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from digi_core.cli import cli
from digi_core.cli.client import ApiClient
from digi_core.cli.user import project
from digi_core.cli.user.common import (
    api_option,
    json_option,
    note_console,
    print_json,
    print_table,
    query,
    run,
    signed_in,
)
from digi_core.cli.user.progress import follow_job
from digi_core.errors import BadUserInput, NotFound

STACK_FILE = "digi.toml"
APPLY = """mutation($toml: String!, $id: ID) { applyStack(toml: $toml, serviceId: $id) {
  service { id name } created updated removed unchanged
} }"""
DEPLOY = (
    "mutation($id: ID!, $only: [String!]) { deployService(serviceId: $id, only: $only) { jobId } }"
)
ROLLBACK = "mutation($id: ID!) { rollbackDeployment(deploymentId: $id) { jobId } }"
CREATE_UPLOAD = (
    "mutation($name: String!, $port: Int) { createService(name: $name, components: "
    '[{name: "web", type: UPLOAD, port: $port}]) { id name } }'
)
COMPONENTS = "query($id: ID!) { service(id: $id) { components { name type isPrimary } } }"
DEPLOYMENT_FIELDS = (
    "id jobId component status message error image commitSha createdAt startedAt finishedAt "
    "rollbackOf"
)
DEPLOYMENTS = (
    f"query($id: ID!, $limit: Int!) {{ service(id: $id) {{ deployments(limit: $limit) "
    f"{{ {DEPLOYMENT_FIELDS} }} }} }}"
)
# Statuses of a deployment that ran: a rollback can run its image again.
SUCCEEDED = {"RUNNING", "SUPERSEDED", "STOPPED"}

detach_option = click.option("--detach", is_flag=True, help="Print the job id and return at once.")
service_option = click.option(
    "--service", "service_id", help="The service's id (else the linked one)."
)


@cli.command()
@click.option(
    "--file",
    "stack_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The stack file [./{STACK_FILE}].",
)
@click.option("--only", help="Deploy only these components (comma-separated names).")
@service_option
@detach_option
@api_option
def deploy(
    api_url: str,
    stack_file: Path | None,
    only: str | None,
    service_id: str | None,
    detach: bool,
) -> None:
    """Apply digi.toml to its service and deploy it, following each component live.

    The first deploy creates the service and links the directory to it (.digi/service.json);
    later ones update that service. Without a digi.toml, --service deploys a service as it is.
    Ends with each component's URL; exits 0 only when every deployed component is running.

    \b
    Example:
      digi deploy
      digi deploy --only app,redis --file deploy/digi.toml
      digi deploy --service 12 --detach
    """
    components = [name.strip() for name in only.split(",") if name.strip()] if only else None
    path = stack_file or Path(STACK_FILE)
    stack = project.StackFile.read(path) if path.is_file() else None
    if stack is None and stack_file is not None:
        raise BadUserInput(f"{stack_file} does not exist")
    if stack is None and service_id is None:
        raise BadUserInput(
            f"no {STACK_FILE} here: write one (`digi schema --toml` describes it), "
            "or deploy an existing service with --service ID"
        )
    sys.exit(run(_deploy(api_url, stack, components, service_id, detach)))


async def _deploy(
    api_url: str,
    stack: project.StackFile | None,
    only: list[str] | None,
    service_id: str | None,
    detach: bool,
) -> int:
    async with signed_in(api_url) as client:
        # Without a stack the command made sure a service was given.
        target = await apply_stack(client, stack, service_id) if stack else str(service_id)
        answer = await client.query(DEPLOY, {"id": target, "only": only})
        return await _followed(client, target, answer["deployService"]["jobId"], detach)


async def _followed(client: ApiClient, service_id: str, job_id: str, detach: bool) -> int:
    """Exit code of a started job: followed to its end unless ``detach``."""
    if detach:
        click.echo(job_id)
        note_console.print(f"Deploying; watch it with `digi deployments {service_id}`.")
        return 0
    return 0 if await follow_job(client, service_id, job_id) else 1


async def apply_stack(client: ApiClient, stack: project.StackFile, service_id: str | None) -> str:
    """Apply the stack file to the given, linked or (first deploy) a new service: its id."""
    directory = stack.directory
    linked = project.linked_service(directory, client.api_url)
    target = service_id or linked
    try:
        answer = await client.query(APPLY, {"toml": stack.text, "id": target})
    except NotFound as error:
        if service_id is None and linked is not None:
            raise NotFound(
                f"the service {linked} linked in {directory / project.LINK_FILE} is gone "
                "(or not yours): delete that file to create a new service"
            ) from None
        raise error
    result = answer["applyStack"]
    service = result["service"]
    changes = [
        f"{what} {', '.join(result[what])}"
        for what in ("created", "updated", "removed", "unchanged")
        if result[what]
    ]
    note_console.print(
        f"Applied {stack.path.name} to {service['name']} (id {service['id']}): "
        + "; ".join(changes),
        markup=False,
    )
    if linked != service["id"]:
        link = project.link_service(directory, client.api_url, service["id"], service["name"])
        note_console.print(f"Linked {directory} to it in {link}", markup=False)
    return str(service["id"])


@cli.command()
@click.argument(
    "directory",
    default=".",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@service_option
@click.option("--component", help="The upload component to send to [each of them].")
@click.option("--name", help="Name of the service when `up` creates it [the directory's].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port of the app when `up` creates the service.",
)
@detach_option
@api_option
def up(
    api_url: str,
    directory: Path,
    service_id: str | None,
    component: str | None,
    name: str | None,
    port: int,
    detach: bool,
) -> None:
    """Deploy a directory without Git: upload it (minus what .gitignore and .dockerignore
    leave out), build it with its Dockerfile, and follow the deploy.

    The service is the directory's digi.toml (applied first), the --service given, the one
    the directory is linked to, or else a new one with an upload component "web" (linked).

    \b
    Example:
      digi up
      digi up ./site --name blog --port 80
    """
    directory = directory.resolve()
    stack_path = directory / STACK_FILE
    stack = project.StackFile.read(stack_path) if stack_path.is_file() else None
    sys.exit(run(_up(api_url, directory, stack, service_id, component, name, port, detach)))


async def _up(
    api_url: str,
    directory: Path,
    stack: project.StackFile | None,
    service_id: str | None,
    component: str | None,
    name: str | None,
    port: int,
    detach: bool,
) -> int:
    async with signed_in(api_url) as client:
        if stack is not None:
            service_id = await apply_stack(client, stack, service_id)
        service_id = service_id or project.linked_service(directory, api_url)
        if service_id is None:
            service_id = await _create_upload_service(client, directory, name, port)
        targets = await _upload_components(client, service_id, component)
        tarball = await asyncio.to_thread(project.make_tarball, directory)
        with tarball.file:
            for target in targets:
                tarball.file.seek(0)
                await client.upload(service_id, target, tarball.file)
                note_console.print(
                    f"Uploaded {tarball.files} files ({tarball.size / 1024:.0f} KiB) to {target}",
                    markup=False,
                )
        job_id = (await client.query(DEPLOY, {"id": service_id}))["deployService"]["jobId"]
        return await _followed(client, service_id, job_id, detach)


async def _create_upload_service(
    client: ApiClient, directory: Path, name: str | None, port: int
) -> str:
    name = name or project.service_name_for(directory)
    created = (await client.query(CREATE_UPLOAD, {"name": name, "port": port}))["createService"]
    link = project.link_service(directory, client.api_url, created["id"], name)
    note_console.print(
        f"Created service {name} (id {created['id']}), linked in {link}", markup=False
    )
    return str(created["id"])


async def _upload_components(
    client: ApiClient, service_id: str, component: str | None
) -> list[str]:
    components = (await client.query(COMPONENTS, {"id": service_id}))["service"]["components"]
    uploads = [item["name"] for item in components if item["type"] == "UPLOAD"]
    if component is not None:
        if component not in uploads:
            raise BadUserInput(f"service {service_id} has no upload component {component}")
        return [component]
    if not uploads:
        raise BadUserInput(
            f'service {service_id} has no upload component: add one (type = "upload" in '
            f"{STACK_FILE}) or pass another --service"
        )
    return uploads


@cli.command()
@click.argument("service_id")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@api_option
@json_option
def deployments(api_url: str, service_id: str, limit: int, as_json: bool) -> None:
    """List a service's deployments, newest first (`digi deployment-log ID` prints one's
    steps and build output).

    JSON: a list of {id, jobId, component, status, message, error, image, commitSha,
    createdAt, startedAt, finishedAt, rollbackOf}.

    \b
    Example:
      digi deployments 12 --limit 5
    """
    rows = query(api_url, DEPLOYMENTS, {"id": service_id, "limit": limit})["service"]["deployments"]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "component", "status", "message", "created"],
        [
            [
                row["id"],
                row["component"],
                row["status"],
                row["error"] or row["message"],
                row["createdAt"],
            ]
            for row in rows
        ],
        "Not deployed yet.",
    )


@cli.command()
@click.argument("service_id")
@click.argument("deployment_id", required=False)
@click.option("--component", help="Without a deployment id: the component [the primary one].")
@detach_option
@api_option
def rollback(
    api_url: str,
    service_id: str,
    deployment_id: str | None,
    component: str | None,
    detach: bool,
) -> None:
    """Run an earlier deployment's image again (no rebuild), and follow it.

    Without a deployment id: the component's previous successful deployment.

    \b
    Example:
      digi rollback 12
      digi rollback 12 341
    """
    sys.exit(run(_rollback(api_url, service_id, deployment_id, component, detach)))


async def _rollback(
    api_url: str,
    service_id: str,
    deployment_id: str | None,
    component: str | None,
    detach: bool,
) -> int:
    async with signed_in(api_url) as client:
        if deployment_id is None:
            deployment_id = await _previous_success(client, service_id, component)
        answer = await client.query(ROLLBACK, {"id": deployment_id})
        note_console.print(f"Rolling back to deployment {deployment_id}", markup=False)
        return await _followed(client, service_id, answer["rollbackDeployment"]["jobId"], detach)


async def _previous_success(client: ApiClient, service_id: str, component: str | None) -> str:
    """The successful deployment before the one running now, of ``component`` or the primary."""
    if component is None:
        components = (await client.query(COMPONENTS, {"id": service_id}))["service"]["components"]
        component = next(item["name"] for item in components if item["isPrimary"])
    rows = (await client.query(DEPLOYMENTS, {"id": service_id, "limit": 100}))["service"][
        "deployments"
    ]
    succeeded = [
        row
        for row in rows
        if row["component"] == component and row["status"] in SUCCEEDED and row["image"]
    ]
    running = next((i for i, row in enumerate(succeeded) if row["status"] == "RUNNING"), -1)
    if running + 1 >= len(succeeded):
        raise NotFound(f"{component} has no earlier successful deployment to roll back to")
    return str(succeeded[running + 1]["id"])

"""`digi deployment-log`: one deployment's steps and build output, then live while it runs;
``DeploymentLog`` reads it the same way for the console."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import click
from rich.text import Text

from digi_core.cli import cli
from digi_core.cli.client import ApiClient
from digi_core.cli.user.common import api_option, console, json_option, run, signed_in
from digi_core.cli.user.progress import STYLES, reconnecting

LOG_PAGE = """query($id: ID!, $after: ID) {
  deploymentLog(deploymentId: $id, after: $after, limit: 1000) {
    deployment { id jobId component status error }
    lines { id at status line }
    hasMore
  }
}"""
JOB_EVENTS = """subscription($job: String!) {
  deploymentStatus(jobId: $job) { deploymentId status message at logLineId }
}"""
IN_PROGRESS = {"QUEUED", "BUILDING", "DEPLOYING"}


class DeploymentLog:
    """One deployment's log as a client reads it: the lines the API kept, then, while the
    deployment is in progress, its job's live events for it.

    The API writes each line before it sends it live, with the line's id: reading the kept
    lines once the subscription answers misses none, and a live line is shown only when it
    is newer than the last shown. ``lines()`` may be called again after a dropped
    connection: it goes on after the last line it gave."""

    def __init__(self, client: ApiClient, deployment_id: str) -> None:
        self.client = client
        self.deployment_id = deployment_id
        self.deployment: dict[str, Any] = {}
        self.last_id = 0

    async def lines(self, *, follow: bool = True) -> AsyncIterator[dict[str, Any]]:
        """``{"at", "status", "line"}`` in order: kept ones, then (``follow``) live ones
        until the deployment's job ends."""
        async for line in self._kept():
            yield line
        if not (follow and self.deployment["status"] in IN_PROGRESS):
            return
        subscribed = False
        variables = {"job": self.deployment["jobId"]}
        async for data in self.client.subscribe(JOB_EVENTS, variables):
            if not subscribed:  # every line from now on comes live: read those in between
                subscribed = True
                async for line in self._kept():
                    yield line
            event = data["deploymentStatus"]
            if event["deploymentId"] != self.deployment_id:
                continue
            if event["logLineId"] is not None:
                if int(event["logLineId"]) <= self.last_id:
                    continue  # shown already
                self.last_id = int(event["logLineId"])
            yield {"at": event["at"], "status": event["status"], "line": event["message"]}
        async for line in self._kept():  # the job ended: its final state
            yield line

    async def _kept(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            variables = {"id": self.deployment_id, "after": str(self.last_id)}
            page = (await self.client.query(LOG_PAGE, variables))["deploymentLog"]
            self.deployment = page["deployment"]
            for line in page["lines"]:
                self.last_id = int(line["id"])
                yield line
            if not page["hasMore"]:
                return


@cli.command("deployment-log")
@click.argument("deployment_id")
@click.option(
    "--follow/--no-follow", default=True, help="While it is in progress, keep printing [follow]."
)
@api_option
@json_option
def deployment_log(api_url: str, deployment_id: str, follow: bool, as_json: bool) -> None:
    """Print a deployment's log: its steps and its build's output, then, while it is still in
    progress, new lines as they come (a dropped connection is reopened without repeats).

    `digi deployments SERVICE_ID` lists the ids. The newest 20 deployments of each component
    keep their logs (the operator's DIGI_DEPLOY_LOGS_KEPT).

    JSON: one {at, status, line} object per line.

    \b
    Example:
      digi deployment-log 231
      digi deployment-log 231 --no-follow --json | jq -r .line
    """
    run(_print_log(api_url, deployment_id, follow, as_json))


async def _print_log(api_url: str, deployment_id: str, follow: bool, as_json: bool) -> None:
    async with signed_in(api_url) as client:
        log = DeploymentLog(client, deployment_id)
        status = ""
        async for line in reconnecting(lambda: log.lines(follow=follow)):
            if as_json:
                fields = {key: line[key] for key in ("at", "status", "line")}
                sys.stdout.write(json.dumps(fields) + "\n")
                sys.stdout.flush()
                continue
            for text in styled(line, status):
                console.print(text)
            status = line["status"]
        if log.deployment.get("error") and not as_json:
            console.print(Text(f"failed: {log.deployment['error']}", style="red"))


def styled(line: dict[str, Any], status_before: str) -> list[Text]:
    """How a log line shows: a header where the status changes, then its time and text."""
    texts = []
    if line["status"] != status_before:
        header = f"── {line['status'].lower()} ──"
        texts.append(Text(header, style=STYLES.get(line["status"], "cyan")))
    texts.append(Text.assemble((line["at"][11:19] + " ", "dim"), line["line"]))
    return texts

"""Deploying through the CLI: a digi.toml stack with --only, followed live to each URL; the
container's logs followed while the app prints, and Ctrl-C; `digi up` of a directory."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

from digi_core.cli.user import project
from tests.cli.conftest import Cli, DroppingProxy
from tests.core.deploys.conftest import Platform

DIGI_TOML = """\
name = "clistack"

[services.web]
type = "docker"
image = "digi-test-web:latest"
port = 8000
healthcheck = "/health"

[services.web.env]
COMPONENT = "front"

[services.api]
type = "docker"
image = "digi-test-web:latest"
port = 8000
"""
UPLOAD_DOCKERFILE = """\
FROM digi-test-web:latest
COPY index.html /www/index.html
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""


def host_of(url: str) -> str:
    return url.split("://", 1)[1].split(":")[0].split("/")[0]


async def read_until(stream: asyncio.StreamReader, text: str, within: float = 30) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(within):
        while not lines or text not in lines[-1]:
            lines.append((await stream.readline()).decode())
    return lines


async def test_deploy_a_stack_with_only_then_follow_its_logs(
    owner_cli: Cli, platform: Platform
) -> None:
    (owner_cli.cwd / "digi.toml").write_text(DIGI_TOML)
    deployed = await owner_cli("deploy", "--only", "web")
    assert "Applied digi.toml to clistack" in deployed.stderr
    assert "web: running:" in deployed.stdout
    link = json.loads((owner_cli.cwd / ".digi" / "service.json").read_text())
    service_id = link[owner_cli.env["DIGI_API_URL"]]["serviceId"]
    info = (await owner_cli("services", "info", service_id, "--json")).json()
    web = next(item for item in info["components"] if item["name"] == "web")
    assert web["url"] in deployed.stdout.replace("\n", "")
    rows = (await owner_cli("deployments", service_id, "--json")).json()
    assert [(row["component"], row["status"]) for row in rows] == [("web", "RUNNING")]
    await platform.expect(host_of(web["url"]), 200, "hello from front")

    logs = await owner_cli.start("logs", service_id, "--tail", "10")
    assert logs.stdout is not None and logs.stderr is not None
    assert await read_until(logs.stdout, "serving") == ["serving\n"]
    # busybox httpd prints a line per request, live.
    await platform.get(host_of(web["url"]), "/missing")
    await read_until(logs.stdout, "response:404")
    logs.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(logs.wait(), 10) == 130
    assert "Traceback" not in (await logs.stderr.read()).decode()

    detached = await owner_cli("deploy", "--only", "api", "--detach")
    assert detached.stdout.startswith("job_") and detached.stdout.count("\n") == 1


async def test_logs_reconnect_without_repeating_lines_and_rollback(
    owner_cli: Cli, platform: Platform
) -> None:
    created = (
        await owner_cli(
            "services",
            "create",
            "--name",
            "chatty",
            "--image",
            "digi-test-web:latest",
            "--healthcheck",
            "/health",
            "--json",
        )
    ).json()
    service_id, url = created["id"], created["components"][0]["url"]
    await owner_cli("deploy", "--service", service_id)

    async with DroppingProxy(platform.client.port) as proxy:  # type: ignore[arg-type]
        logs = await owner_cli.start(
            "logs", service_id, "web", "--api", f"http://127.0.0.1:{proxy.port}"
        )
        assert logs.stdout is not None and logs.stderr is not None
        printed = await read_until(logs.stdout, "serving")
        await platform.get(host_of(url), "/missing")
        printed += await read_until(logs.stdout, "response:404")
        proxy.drop()
        stderr_line = (await logs.stderr.readline()).decode()
        assert "lost the connection" in stderr_line and "reconnecting" in stderr_line
        # The same text again is a new line (a later stamp): it is printed, the replay is not.
        await asyncio.wait_for(proxy.connected.wait(), 10)
        await platform.get(host_of(url), "/missing")
        printed += await read_until(logs.stdout, "response:404")
        logs.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(logs.wait(), 10) == 130
        printed += (await logs.stdout.read()).decode().splitlines(keepends=True)
    # Each line once (they differ by the client's port), though the stream was replayed.
    assert len(printed) == len(set(printed)) == 4, printed
    assert printed[0] == "serving\n" and printed[-1].endswith("response:404\n")

    recent = await owner_cli("logs", service_id, "--tail", "2", "--no-follow")
    assert recent.stdout.count("\n") == 2 and recent.stdout.endswith("response:404\n")

    await owner_cli("deploy", "--service", service_id)
    [_, first] = (await owner_cli("deployments", service_id, "--json")).json()
    rolled = await owner_cli("rollback", service_id)
    assert f"Rolling back to deployment {first['id']}" in rolled.stderr
    newest, *_ = (await owner_cli("deployments", service_id, "--json")).json()
    assert (newest["rollbackOf"], newest["status"]) == (first["id"], "RUNNING")


async def test_up_uploads_the_directory_without_ignored_files(
    owner_cli: Cli, platform: Platform, tmp_path: Path
) -> None:
    site = tmp_path / "My Site"
    (site / "node_modules").mkdir(parents=True)
    files = {
        "Dockerfile": UPLOAD_DOCKERFILE,
        "index.html": "uploaded\n",
        ".gitignore": "secret.txt\nnode_modules/\n",
        ".dockerignore": "*.log\n",
        "secret.txt": "not for the server",
        "app.log": "noise",
        "node_modules/left.js": "",
    }
    for name, content in files.items():
        (site / name).write_text(content)
    assert project.source_files(site) == [".dockerignore", ".gitignore", "Dockerfile", "index.html"]

    result = await owner_cli("up", str(site))
    assert "Created service my-site" in result.stderr and "Uploaded 4 files" in result.stderr
    service_id = project.linked_service(site, owner_cli.env["DIGI_API_URL"])
    [service] = (await owner_cli("services", "list", "--json", "--search", "my-site")).json()
    assert service["id"] == service_id and service["url"] in result.stdout.replace("\n", "")
    await platform.expect(host_of(service["url"]), 200, "uploaded")

    # The next `up` goes to the linked service; a build that fails exits 1.
    (site / "Dockerfile").write_text("FROM digi-test-missing:latest\n")
    failed = await owner_cli("up", str(site), check=False)
    assert failed.returncode == 1 and "FAILED" in failed.stdout
    assert "Created service" not in failed.stderr


async def test_up_deploys_the_readme_example_with_its_digi_toml(
    owner_cli: Cli, platform: Platform, tmp_path: Path
) -> None:
    """examples/hello, as scripts/up.sh deploys it: its base image made from busybox."""
    process = await asyncio.create_subprocess_exec(
        "docker", "tag", "digi-test-base:latest", "busybox:stable"
    )
    assert await process.wait() == 0
    example = tmp_path / "hello"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "hello", example)
    result = await owner_cli("up", str(example))
    assert "Applied digi.toml to hello" in result.stderr and "RUNNING" in result.stdout
    [service] = (await owner_cli("services", "list", "--json", "--search", "hello")).json()
    await platform.expect(host_of(service["url"]), 200, contains="Hello from Digi!")


async def test_deployment_log_prints_the_steps_and_the_build_output(
    owner_cli: Cli, cli: Cli, platform: Platform, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "Dockerfile").write_text(UPLOAD_DOCKERFILE + "RUN echo the step prints this\n")
    (site / "index.html").write_text("logged\n")
    await owner_cli("up", str(site))
    service_id = project.linked_service(site, owner_cli.env["DIGI_API_URL"])
    [newest] = (await owner_cli("deployments", service_id, "--json")).json()

    printed = (await owner_cli("deployment-log", newest["id"])).stdout
    assert printed.index("── queued ──") < printed.index("── building ──")
    assert printed.index("the step prints this") < printed.index("── running ──")
    lines = [
        json.loads(line)
        for line in (await owner_cli("deployment-log", newest["id"], "--json")).stdout.splitlines()
    ]
    assert (lines[0]["status"], lines[0]["line"]) == ("QUEUED", "queued")
    assert (lines[-1]["status"], lines[-1]["line"]) == ("RUNNING", "running")
    assert {"at", "status", "line"} == set(lines[0])

    _, token = await platform.user()
    stranger = await cli.with_env(DIGI_TOKEN=token)("deployment-log", newest["id"], check=False)
    assert stranger.returncode == 4 and f"no deployment {newest['id']}" in stranger.stderr

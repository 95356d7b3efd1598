"""What the build bench deploys: repositories served by `git daemon` on loopback, the
Dockerfile app built cold and warm, and the test suite's PostgreSQL, Redis and stack app images.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
from deploy_setup import BenchError, console, free_port  # also puts the repository on sys.path

from tests.conftest import BASE_IMAGE, _tar
from tests.core.deploys.conftest import (
    DB_BASE_IMAGE,
    POSTGRES_IMAGE,
    POSTGRES_START,
    REDIS_IMAGE,
    STACK_APP_IMAGE,
    STACK_APP_START,
)

APP_PORT = 8000
GIT_START_SECONDS = 10.0
STACK = (
    f'[{{name: "app", type: DOCKER, image: "{STACK_APP_IMAGE}", port: {APP_PORT}, '
    'healthcheckPath: "/health"}, {name: "db", type: POSTGRES}, {name: "cache", type: REDIS}]'
)
STACK_COMPONENTS = ("app", "db", "cache")
DATABASE_IMAGES = {"DIGI_POSTGRES_IMAGE": POSTGRES_IMAGE, "DIGI_REDIS_IMAGE": REDIS_IMAGE}
STACK_ANSWER = "rows=1 key=1"
"""What the stack app serves once it wrote its first row and key (tests/core/deploys)."""
MAKE_DB_BASE = (
    f"the stack's base image {DB_BASE_IMAGE} is missing: run the database test once, "
    "which makes it with debootstrap from deb.debian.org and keeps it "
    "(.venv/bin/pytest tests/core/deploys/test_databases.py -k sqlite), then run the bench again "
    "(or leave the stack out with --only builds)"
)


def app_files(nonce: str, steps: int, step_seconds: float) -> dict[str, str]:
    """A Dockerfile app of ``steps`` slow RUN steps and a few quick ones. The first RUN writes
    ``nonce``, so no earlier build's layer matches any of its steps: a build of a new nonce
    starts from an empty cache."""
    pause = f"{step_seconds:g}"
    lines = [f"FROM {BASE_IMAGE}", f"RUN echo {nonce} > /nonce && sleep {pause}"]
    lines += [f"RUN sleep {pause} && echo {step} > /step-{step}" for step in range(2, steps + 1)]
    lines += [
        "RUN mkdir -p /www && echo ok > /www/health",
        "COPY index.html /www/index.html",
        f'CMD ["httpd", "-f", "-p", "{APP_PORT}", "-h", "/www"]',
    ]
    return {"Dockerfile": "\n".join(lines) + "\n", "index.html": f"build {nonce}\n"}


def app_component(url: str) -> str:
    """The app as a Git component (GraphQL list literal), built from ``url``'s main."""
    return (
        f'[{{name: "web", type: GITHUB, repoUrl: "{url}", branch: "main", port: {APP_PORT}, '
        'healthcheckPath: "/health"}]'
    )


async def git(cwd: Path, *arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *("-c", "user.name=Digi bench", "-c", "user.email=bench@example.com"),
        *arguments,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"git {arguments[0]} failed: {errors.decode(errors='replace').strip()}")
    return output.decode()


class Repositories:
    """Bare repositories under ``root``, served read-only by `git daemon` on ``port``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    async def make(self, name: str, files: dict[str, str]) -> str:
        """A new repository holding one commit of ``files`` on main; answers its URL."""
        work = self.root / f"{name}-work"
        await git(self.root, "init", "-q", "-b", "main", str(work))
        for path, content in files.items():
            await asyncio.to_thread((work / path).write_text, content)
        await git(work, "add", "-A")
        await git(work, "commit", "-q", "-m", "bench")
        await git(self.root, "clone", "-q", "--bare", str(work), str(self.root / f"{name}.git"))
        return self.url(name)


@contextlib.asynccontextmanager
async def git_daemon(root: Path) -> AsyncIterator[Repositories]:
    """`git daemon` serving ``root`` on a free loopback port, stopped afterwards."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *("git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}"),
        *("--listen=127.0.0.1", f"--port={port}", str(root)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + GIT_START_SECONDS
        while not await asyncio.to_thread(_listening, port):
            if process.returncode is not None or time.monotonic() > deadline:
                raise BenchError(f"git daemon did not listen on port {port}")
            await asyncio.sleep(0.05)
        yield Repositories(root, port)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def ensure_stack_images(docker: aiodocker.Docker) -> None:
    """PostgreSQL, Redis and the stack app, built as the test suite's ``database_images``
    fixture builds them (its scripts imported, so they cannot drift) on the Debian base image
    that fixture keeps. Cheap when they exist: every step comes from the cache."""
    try:
        await docker.images.inspect(DB_BASE_IMAGE)
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise
        raise BenchError(MAKE_DB_BASE) from None
    console.print("building the stack's images (as the test suite does)", style="dim")
    for tag, start, command in [
        (POSTGRES_IMAGE, POSTGRES_START, '["sh", "/start.sh"]'),
        (STACK_APP_IMAGE, STACK_APP_START, '["sh", "/start.sh"]'),
        (REDIS_IMAGE, b"", '["redis-server"]'),
    ]:
        dockerfile = f"FROM {DB_BASE_IMAGE}\nCOPY start.sh /start.sh\nCMD {command}\n"
        context = _tar({"Dockerfile": dockerfile.encode(), "start.sh": start})
        output = await docker.images.build(
            fileobj=io.BytesIO(context), encoding="application/x-tar", tag=tag
        )
        if failed := [line["error"] for line in output if "error" in line]:
            raise BenchError(f"building {tag} failed: {failed[0]}")

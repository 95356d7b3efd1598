"""The `digi` CLI as a real subprocess against one real platform (API, worker, Docker, Caddy
on SQLite) shared by the CLI tests; each test gets its own HOME, so its own saved logins."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from digi_core.config import Settings
from tests.conftest import DIGI, free_udp_port
from tests.core.deploys.conftest import Platform, running_platform

COMMAND_TIMEOUT = 120


@pytest.fixture(scope="package")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, docker_images: dict[str, str]
) -> AsyncIterator[Platform]:
    """One platform for every CLI test: the tests make their own users and services."""
    root = tmp_path_factory.mktemp("cli-platform")
    with pytest.MonkeyPatch.context() as patch:
        # What the `clean_env` fixture does for one test, for the whole package.
        for name in list(os.environ):
            if name in Settings.model_fields or name.startswith(("DIGI_", "PROXMOX_", "STRIPE_")):
                patch.delenv(name)
        for name in ("DATABASE_URL", "REDIS_URL", "PLATFORM_DOMAIN"):
            patch.delenv(name, raising=False)
        patch.setenv("DIGI_INTERNAL_DNS", f"127.0.0.1:{free_udp_port()}")
        patch.chdir(root)
        async with running_platform("sqlite", root) as running:
            yield running


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs `digi` with a private HOME, pointed at the platform (DIGI_API_URL)."""

    env: dict[str, str]
    cwd: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    def with_env(self, **variables: str | None) -> Cli:
        env = {**self.env, **{k: v for k, v in variables.items() if v is not None}}
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
        return Cli(env, self.cwd, self.processes)

    async def __call__(
        self, *args: str, input: str | None = None, check: bool = True, cwd: Path | None = None
    ) -> Result:
        """Run to the end (awaiting, so the in-process API keeps answering)."""
        process = await asyncio.create_subprocess_exec(
            DIGI,
            *args,
            env=self.env,
            cwd=cwd or self.cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(
            process.communicate(input.encode() if input is not None else b""), COMMAND_TIMEOUT
        )
        result = Result(process.returncode or 0, stdout.decode(), stderr.decode())
        if check:
            assert result.returncode == 0, f"digi {' '.join(args)}: {result}"
        return result

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """Start a long-running command (logs); stopped at the end of the test."""
        process = await asyncio.create_subprocess_exec(
            DIGI,
            *args,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.processes.append(process)
        return process


@pytest.fixture
async def cli(
    platform: Platform, subprocess_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[Cli]:
    """`digi` signed in as nobody yet (no DIGI_TOKEN, nothing saved)."""
    env = {**subprocess_env, "DIGI_API_URL": str(platform.client.make_url("")).rstrip("/")}
    env.pop("XDG_CONFIG_HOME", None)  # the saved login goes under the private HOME
    runner = Cli(env, tmp_path)
    yield runner
    for process in runner.processes:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


@pytest.fixture
async def owner_cli(cli: Cli, platform: Platform) -> Cli:
    """`digi` with DIGI_TOKEN of a new user."""
    _, token = await platform.user()
    return cli.with_env(DIGI_TOKEN=token)


class DroppingProxy:
    """A TCP forwarder to the API whose open connections a test can cut, as a network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self) -> None:
        """Cut every open connection (new ones are still forwarded)."""
        self.connected.clear()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [writer, upstream_writer]
        self.connected.set()

        async def pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    target.write(data)
                    await target.drain()
            except OSError:
                pass
            finally:
                target.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def on_terminal(cli: Cli, *args: str, answers: str = "") -> Result:
    """Run `digi` on a pseudo-terminal (prompts, live displays), typing ``answers``."""
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        DIGI,
        *args,
        env={**cli.env, "COLUMNS": "120"},
        cwd=cli.cwd,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)  # the command's copies only: reading ends when it exits
    os.write(controller, answers.encode())
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last user closed it
            chunk = b""
        chunks.put_nowait(chunk)
        if not chunk:
            loop.remove_reader(controller)

    loop.add_reader(controller, readable)
    output = bytearray()
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            while chunk := await chunks.get():
                output += chunk
            returncode = await process.wait()
    finally:
        loop.remove_reader(controller)
        os.close(controller)
    return Result(returncode, output.decode(errors="replace"), "")

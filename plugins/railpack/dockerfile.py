"""The Dockerfile builder, always there: the host engine's own builder through its API.

The engine's classic builder needs no buildx and keeps its layer cache between builds, so a
rebuild of unchanged sources reuses every layer. Builds on one host wait for each other past
DIGI_BUILD_CONCURRENCY, and each build's containers get DIGI_BUILD_MEMORY_MB at most, so a
build cannot take the host down.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from digi_core.errors import DigiError
from digi_core.providers import Builder, BuildResult, Host, LogSink

if TYPE_CHECKING:
    from digi_core.config import Settings

MAX_CONTEXT_BYTES = 512 * 2**20
STEP = re.compile(r"^Step (\d+)/(\d+) : (\w+)")


class BuildFailed(DigiError):
    code = "BUILD_FAILED"


class DockerfileBuilder(Builder):
    name = "dockerfile"

    def __init__(self) -> None:
        self.concurrency = 2
        self.memory_bytes = 2048 * 2**20
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def start(self, settings: Settings) -> None:
        self.concurrency = settings.build_concurrency
        self.memory_bytes = settings.build_memory_mb * 2**20

    async def can_build(self, source_dir: Path, dockerfile: str | None = None) -> str | None:
        name = dockerfile or "Dockerfile"
        if (source_dir / name).is_file():
            return None
        return f"there is no {name} in the repository's root"

    async def build(
        self, host: Host, source_dir: Path, tag: str, log: LogSink, dockerfile: str | None = None
    ) -> BuildResult:
        context = await asyncio.to_thread(_tar_context, source_dir)
        slots = self._slots.setdefault(host.id, asyncio.Semaphore(self.concurrency))
        if slots.locked():
            await log("waiting for another build on this host to finish")
        async with slots:
            return await self._build(host, context, tag, log, dockerfile or "Dockerfile")

    async def _build(
        self, host: Host, context: bytes, tag: str, log: LogSink, dockerfile: str
    ) -> BuildResult:
        params = {
            "t": tag,
            "dockerfile": dockerfile,
            "rm": "1",
            "forcerm": "1",
            "memory": str(self.memory_bytes),
            "memswap": str(self.memory_bytes),  # no swap beyond the limit either
        }
        result = BuildResult(image=tag)
        base_images = 0  # FROM steps: they never say "Using cache"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with host.docker._query(
            "build",
            "POST",
            params=params,
            headers={"content-type": "application/x-tar"},
            data=context,
            timeout=timeout,
        ) as response:
            async for raw in response.content:
                message = json.loads(raw) if raw.strip() else {}
                if "error" in message:
                    raise BuildFailed(f"the build failed: {message['error'].strip()}")
                for line in str(message.get("stream", "")).splitlines():
                    if not line.strip():
                        continue
                    if step := STEP.match(line):
                        result.total_steps = int(step.group(2))
                        base_images += step.group(3).upper() == "FROM"
                    if "Using cache" in line:
                        result.cached_steps += 1
                    await log(line)
        result.total_steps -= base_images
        return result


def _tar_context(source_dir: Path) -> bytes:
    """The build context: the source tree without its .git, links kept as links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(source_dir.rglob("*")):
            relative = path.relative_to(source_dir)
            if relative.parts[0] == ".git":
                continue
            archive.add(path, arcname=str(relative), recursive=False)
            if buffer.tell() > MAX_CONTEXT_BYTES:
                raise BuildFailed(
                    f"the source is larger than {MAX_CONTEXT_BYTES // 2**20} MB: leave build "
                    "outputs and dependencies out of the repository"
                )
    return buffer.getvalue()

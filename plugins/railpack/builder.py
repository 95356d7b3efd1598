"""The Railpack builder: zero-config images from source, with the railpack CLI and BuildKit.

Used for sources without a Dockerfile when both are installed on Digi's machine (so for the
local host); otherwise it says exactly what is missing, and that a Dockerfile works instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from digi_core.errors import DigiError
from digi_core.providers import Builder, BuildResult, Host, LogSink

INSTEAD = "add a Dockerfile to the repository's root, or install railpack and BuildKit"


class RailpackFailed(DigiError):
    code = "BUILD_FAILED"


class RailpackBuilder(Builder):
    name = "railpack"

    async def can_build(self, source_dir: Path, dockerfile: str | None = None) -> str | None:
        if shutil.which("railpack") is None:
            return f"railpack is not installed on the Digi host: {INSTEAD}"
        if not os.environ.get("BUILDKIT_HOST"):
            return f"railpack needs BuildKit, and BUILDKIT_HOST is not set: {INSTEAD}"
        return None

    async def build(
        self, host: Host, source_dir: Path, tag: str, log: LogSink, dockerfile: str | None = None
    ) -> BuildResult:
        process = await asyncio.create_subprocess_exec(
            "railpack",
            "build",
            str(source_dir),
            "--name",
            tag,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        last: list[str] = []
        try:
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                last = [*last[-19:], line]
                await log(line)
            code = await process.wait()
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if code != 0:
            raise RailpackFailed(f"railpack build failed (exit {code}):\n" + "\n".join(last))
        return BuildResult(image=tag)

"""The Railpack builder (builds arrive with the sources issue)."""

from __future__ import annotations

from pathlib import Path

from digi_core.errors import NotBuiltYet
from digi_core.providers import Builder, BuildResult, Host, LogSink


class RailpackBuilder(Builder):
    name = "railpack"

    async def can_build(self, source_dir: Path) -> str | None:
        raise NotBuiltYet(self.name, "can_build")

    async def build(self, host: Host, source_dir: Path, tag: str, log: LogSink) -> BuildResult:
        raise NotBuiltYet(self.name, "build")

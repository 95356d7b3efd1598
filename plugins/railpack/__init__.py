"""Builds: a Dockerfile through the host engine (always), or Railpack when it is installed."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import Builder
from digi_railpack.builder import RailpackBuilder
from digi_railpack.dockerfile import DockerfileBuilder


@hookimpl
def register_builders(register: Callable[[Builder], None]) -> None:
    # The order is the preference: a Dockerfile, when there is one, says how to build.
    register(DockerfileBuilder())
    register(RailpackBuilder())

"""Builds with Railpack (zero-config images from source) when railpack and BuildKit exist."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import Builder
from digi_railpack.builder import RailpackBuilder


@hookimpl
def register_builders(register: Callable[[Builder], None]) -> None:
    register(RailpackBuilder())

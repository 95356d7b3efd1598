"""Compute on this machine's Docker engine: the embedded default's one host."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import ComputeProvider
from digi_local.compute import LocalCompute


@hookimpl
def register_compute(register: Callable[[ComputeProvider], None]) -> None:
    register(LocalCompute())

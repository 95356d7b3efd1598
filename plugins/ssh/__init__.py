"""Compute on servers the operator already has, reached over SSH ("bring your own server")."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import ComputeProvider
from digi_ssh.compute import SshCompute


@hookimpl
def register_compute(register: Callable[[ComputeProvider], None]) -> None:
    register(SshCompute())

"""Compute on a Proxmox VE cluster: a VM per service, cloned from a template, reached over SSH."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import ComputeProvider
from digi_proxmox.compute import ProxmoxCompute


@hookimpl
def register_compute(register: Callable[[ComputeProvider], None]) -> None:
    register(ProxmoxCompute())

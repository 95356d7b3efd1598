"""The Proxmox provider's world: the fake PVE API, and a real sshd standing for every VM it
hands out (this machine's Docker socket behind it)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from digi_core.config import Settings
from digi_core.ssh import platform_key, public_key_line
from digi_proxmox.compute import ProxmoxCompute
from tests.fake_proxmox import FakeProxmox
from tests.sshd import Sshd

NODE_NAME = "pve-main"


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeProxmox]:
    async with FakeProxmox(tmp_path / "pve", task_seconds=0.1) as server:
        yield server


@pytest.fixture
async def vm_sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    """What answers at every VM's address: a real sshd, authorized for the platform key."""
    server = Sshd(tmp_path / "sshd")
    key = platform_key(tmp_path / "key" / "id_ed25519")
    server.authorize(public_key_line(key))
    await server.start()
    yield server
    await server.stop()


def docker_socket() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")


def proxmox_settings(
    migrated: Settings, fake: FakeProxmox, sshd: Sshd, tmp_path: Path, **extra: Any
) -> Settings:
    return migrated.model_copy(
        update={
            "compute": "proxmox",
            "proxmox_verify_ssl": str(fake.ca_file),
            "proxmox_task_timeout": 10.0,
            "proxmox_boot_timeout": 10.0,
            "ssh_key_file": tmp_path / "key" / "id_ed25519",
            "vm_user": sshd.user,
            "vm_ssh_port": sshd.port,
            "host_docker_socket": docker_socket(),
            **extra,
        }
    )


def node_options(fake: FakeProxmox, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": fake.url + "/",
        "token_id": fake.token_id,
        "token_secret": fake.token_secret,
        "node": "pve1",
        "template_vm_id": 9000,
        "storage": "local-lvm",
        "bridge": "vmbr0",
        "full_clone": False,
        **extra,
    }


@pytest.fixture
async def proxmox(
    migrated: Settings, fake: FakeProxmox, vm_sshd: Sshd, tmp_path: Path
) -> AsyncIterator[ProxmoxCompute]:
    """Started, with one node added through the provider (as addProxmoxNode does)."""
    compute = ProxmoxCompute()
    compute.agent_poll_seconds = 0.05
    await compute.start(proxmox_settings(migrated, fake, vm_sshd, tmp_path))
    await compute.add_node(NODE_NAME, node_options(fake))
    yield compute
    await compute.close()

"""The Proxmox provider's world: the fake PVE API, a real sshd standing for every VM it hands
out (this machine's Docker socket behind it), and the whole platform on top of them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from digi_core.config import Settings
from digi_core.models import User
from digi_core.ssh import platform_key, public_key_line
from digi_proxmox.compute import ProxmoxCompute
from tests.core.deploys.conftest import (  # noqa: F401  (test_images: a fixture)
    Platform,
    free_port,
    running_platform,
    test_images,
)
from tests.core.deploys.test_pipeline import WEB
from tests.fake_proxmox import FakeProxmox
from tests.plugins.caddy.conftest import bare_caddy  # noqa: F401  (a fixture)
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


@pytest.fixture
async def on_proxmox(
    tmp_path: Path,
    clean_env: Path,
    test_images: dict[str, str],  # noqa: F811
    fake: FakeProxmox,
    vm_sshd: Sshd,
    bare_caddy: str,  # noqa: F811
) -> AsyncIterator[Platform]:
    """The platform with DIGI_COMPUTE=proxmox; the Caddy it runs plays the VM's Caddy (reached
    through the SSH tunnel), the bare Caddy plays the master."""
    caddy_admin_port = free_port()
    async with running_platform(
        "sqlite",
        tmp_path,
        DIGI_LOAD_PLUGINS="proxmox,caddy,railpack",
        DIGI_COMPUTE="proxmox",
        PROXMOX_URL=fake.url,
        PROXMOX_TOKEN_ID=fake.token_id,
        PROXMOX_TOKEN_SECRET=fake.token_secret,
        PROXMOX_NODE="pve1",
        PROXMOX_TEMPLATE_ID=9000,
        PROXMOX_VERIFY_SSL=str(fake.ca_file),
        DIGI_SSH_KEY=tmp_path / "key" / "id_ed25519",
        DIGI_VM_USER=vm_sshd.user,
        DIGI_VM_SSH_PORT=vm_sshd.port,
        DIGI_HOST_DOCKER_SOCKET=docker_socket(),
        DIGI_CADDY_ADMIN_URL=f"http://127.0.0.1:{caddy_admin_port}",
        DIGI_HOST_CADDY_ADMIN=f"127.0.0.1:{caddy_admin_port}",
        DIGI_PROXMOX_BOOT_TIMEOUT=30,
        MASTER_CADDY_URL=bare_caddy,
        DIGI_MASTER_HTTP_PORT=free_port(),
    ) as platform:
        yield platform


async def running_in_a_vm(
    platform: Platform, fake: FakeProxmox
) -> tuple[User, str, dict[str, Any], int]:
    """A new owner's service "shop" deployed and running in its own VM: the owner, their
    token, the service and the VM's id."""
    owner, token = await platform.user("owner@example.com")
    service = await platform.service(token, "shop", WEB)
    rows = await platform.wait_job((await platform.deploy(token, service["id"]))["jobId"])
    assert [row.status.value for row in rows] == ["running"], rows[0].error
    [vmid] = [vmid for vmid in fake.vms if vmid != 9000]
    return owner, token, service, vmid

"""A `digi worker` killed (SIGKILL) while Proxmox clones its service's VM: another worker
resumes the deploy, continues the same VM (one clone, one VM) and the service runs."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from digi_core import accounts
from digi_core.config import load_settings
from digi_core.models import DeploymentStatus, HostStatus
from digi_core.models import Host as HostRow
from digi_core.server.app import init_app
from tests.conftest import REDIS_URL, TEST_SECRET, upgrade
from tests.core.deploys.conftest import free_port, remove_services
from tests.core.deploys.test_worker_loss import (
    CREATE,
    DEPLOY,
    Processes,
    gql,
    processes,  # noqa: F401  (a fixture)
    wait_status,
)
from tests.fake_proxmox import FakeProxmox
from tests.plugins.proxmox.conftest import docker_socket
from tests.sshd import Sshd


async def until_cloning(fake: FakeProxmox) -> None:
    for _ in range(600):
        if any(task.type == "qmclone" for task in fake.tasks.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no worker started the clone")


async def test_a_worker_killed_while_its_vm_is_cloned_is_replaced_and_the_vm_continued(
    tmp_path: Path,
    clean_env: Path,
    processes: Processes,  # noqa: F811
    postgres_url: str,
    docker_images: dict[str, str],
    fake: FakeProxmox,
    vm_sshd: Sshd,
) -> None:
    caddy_admin_port = free_port()
    common = {
        "DIGI_SECRET": TEST_SECRET,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": REDIS_URL,
        "DIGI_REDIS_PREFIX": f"digitest{uuid.uuid4().hex[:12]}:",
        "DIGI_LOAD_PLUGINS": "proxmox,caddy",
        "DIGI_COMPUTE": "proxmox",
        "DIGI_CADDY_ADMIN_URL": f"http://127.0.0.1:{caddy_admin_port}",
        "DIGI_HOST_CADDY_ADMIN": f"127.0.0.1:{caddy_admin_port}",
        "DIGI_HTTP_PORT": str(free_port()),
        "DIGI_WORKER_HEARTBEAT": "0.5",
        "DIGI_WORKER_STALE_AFTER": "2",
        "DIGI_RECONCILE_INTERVAL": "1",
        "DIGI_DATA_DIR": str(tmp_path / "data"),
        # The API answers the internal DNS zone; the workers write it through the database.
        "DIGI_INTERNAL_DNS": os.environ["DIGI_INTERNAL_DNS"],
        "PROXMOX_URL": fake.url,
        "PROXMOX_TOKEN_ID": fake.token_id,
        "PROXMOX_TOKEN_SECRET": fake.token_secret,
        "PROXMOX_NODE": "pve1",
        "PROXMOX_TEMPLATE_ID": "9000",
        "PROXMOX_VERIFY_SSL": str(fake.ca_file),
        "DIGI_SSH_KEY": str(tmp_path / "key" / "id_ed25519"),
        "DIGI_VM_USER": vm_sshd.user,
        "DIGI_VM_SSH_PORT": str(vm_sshd.port),
        "DIGI_HOST_DOCKER_SOCKET": docker_socket(),
        "DIGI_PROXMOX_BOOT_TIMEOUT": "30",
    }
    # The API alone in this process (it adds the node and starts the Caddy that plays the
    # VM's); deploys run in `digi worker`s.
    settings = load_settings(**common, DIGI_RUN_WORKER="false")
    await upgrade(settings)
    api = TestClient(TestServer(init_app(settings)))
    await api.start_server()
    processes.env.update(common)
    slug = ""
    try:
        user = await accounts.create_user("owner@example.com", "correct horse battery", "Owner")
        _, token = await accounts.issue_token(TEST_SECRET, user, "test")
        url = str(api.make_url("/graphql"))
        fake.task_seconds = 4.0  # a slow clone: time to kill the worker during it
        async with aiohttp.ClientSession() as client:
            service = (await gql(client, url, token, CREATE))["createService"]
            slug = service["slug"]
            doomed = processes.start("worker")
            job = await gql(client, url, token, DEPLOY, id=service["id"])
            job_id = job["deployService"]["jobId"]
            await until_cloning(fake)
            doomed.kill()  # SIGKILL: no chance to hand the deploy or the VM back
            doomed.wait()
            fake.task_seconds = 0.1
            processes.start("worker")
            row = await wait_status(job_id, DeploymentStatus.RUNNING, within=90)
        assert row.attempts == 2, processes.logs()
        assert sum(1 for task in fake.tasks.values() if task.type == "qmclone") == 1
        host = await HostRow.get(provider="proxmox")
        assert host.status is HostStatus.READY
        assert [vmid for vmid in fake.vms if vmid != 9000] == [int(host.external_id)]
    finally:
        processes.stop_all()
        await api.close()
        await remove_services({slug} if slug else set())

"""A service deployed end to end on Proxmox: the node from PROXMOX_*, a VM made through the
fake PVE API, reached over a real sshd (Docker socket and the VM's Caddy forwarded), both
Caddy tiers, and the admin's GraphQL operations on nodes and VMs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from digi_core.models import Host as HostRow
from digi_core.models import HostStatus, Role
from tests.core.api.conftest import GraphQLErrors
from tests.core.deploys.conftest import (  # noqa: F401  (test_images: a fixture)
    Platform,
    free_port,
    running_platform,
    test_images,
)
from tests.core.deploys.test_pipeline import WEB, hostname
from tests.core.deploys.test_routing import through
from tests.fake_proxmox import FakeProxmox
from tests.plugins.caddy.conftest import bare_caddy  # noqa: F401  (a fixture)
from tests.plugins.proxmox.conftest import docker_socket
from tests.sshd import Sshd

NODE = """
mutation($input: ProxmoxNodeInput!) {
  addProxmoxNode(input: $input) { id name status vmCount memoryTotalBytes }
}"""


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


async def test_a_service_runs_in_its_own_vm_and_answers_through_both_tiers(
    on_proxmox: Platform, fake: FakeProxmox
) -> None:
    platform = on_proxmox
    _, admin = await platform.user("ops@example.com", role=Role.ADMIN)
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "shop", WEB)
    rows = await platform.wait_job((await platform.deploy(token, service["id"]))["jobId"])
    assert [row.status.value for row in rows] == ["running"], rows[0].error
    assert await through(platform.settings.master_http_port, hostname(service, platform)) == (
        200,
        "hello from web\n",
    )
    [vmid] = [vmid for vmid in fake.vms if vmid != 9000]
    row = await HostRow.get(external_id=str(vmid))
    assert row.status is HostStatus.READY and row.ssh_host_key

    servers = (await platform.gql("{ servers { id status vmCount } }", token=admin))["servers"]
    assert {"id": "node/pve1", "status": "ready", "vmCount": 1} in servers
    assert str(vmid) in {server["id"] for server in servers}
    stats = await platform.gql(
        "query($id: String!) { vmStats(vmId: $id, timeframe: DAY) { samples { cpuFraction } } }",
        {"id": str(vmid)},
        token=admin,
    )
    assert stats["vmStats"]["samples"]

    # The node hosts a VM: removing it is refused with the reason.
    with pytest.raises(GraphQLErrors, match="still hosts 1 VM"):
        await platform.gql('mutation { removeProxmoxNode(id: "node/pve1") }', token=admin)

    deleted = await platform.gql(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
        {"id": service["id"]},
        token=token,
    )
    assert deleted["deleteService"]["removed"]
    assert vmid not in fake.vms
    assert await platform.gql('mutation { removeProxmoxNode(id: "node/pve1") }', token=admin)


async def test_nodes_are_added_only_by_admins_and_only_with_good_credentials(
    on_proxmox: Platform, fake: FakeProxmox
) -> None:
    platform = on_proxmox
    _, admin = await platform.user("ops@example.com", role=Role.ADMIN)
    _, user = await platform.user("user@example.com")
    good = {
        "name": "second",
        "apiUrl": fake.url,
        "tokenId": fake.token_id,
        "tokenSecret": fake.token_secret,
        "node": "pve1",
        "templateVmId": 9000,
        "maxVms": 3,
    }
    with pytest.raises(GraphQLErrors) as refused:
        await platform.gql(NODE, {"input": good}, token=user)
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"
    with pytest.raises(GraphQLErrors, match="invalid token value") as bad:
        await platform.gql(NODE, {"input": {**good, "tokenSecret": "nope"}}, token=admin)
    assert bad.value.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    with pytest.raises(GraphQLErrors, match="tokenId must look like"):
        await platform.gql(NODE, {"input": {**good, "tokenId": "nope"}}, token=admin)
    added = (await platform.gql(NODE, {"input": good}, token=admin))["addProxmoxNode"]
    assert added == {
        "id": "node/second",
        "name": "second",
        "status": "ready",
        "vmCount": 0,
        "memoryTotalBytes": float(fake.nodes["pve1"].maxmem),
    }

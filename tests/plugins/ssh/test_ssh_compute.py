"""The ssh compute provider against a real sshd: the shared contract, placement on the
emptiest server, the host key pinned in the Host row and a changed one refused, and
DIGI_SSH_SERVERS checked."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digi_core.config import Settings, load_settings
from digi_core.errors import ConfigError, NotBuiltYet, NotConfigured
from digi_core.models import Host as HostRow
from digi_core.models import Service, User
from digi_core.providers import ComputeProvider
from digi_core.ssh import HostKeyChanged
from digi_ssh.compute import SshCompute
from digi_ssh.servers import Server, parse_servers
from tests.conftest import TEST_SECRET
from tests.contracts.compute import ComputeProviderContract, ProvisionLog
from tests.sshd import Sshd


class TestSshCompute(ComputeProviderContract):
    @pytest.fixture
    async def provider(self, ssh_settings: Settings) -> AsyncIterator[ComputeProvider]:
        compute = SshCompute()
        await compute.start(ssh_settings)
        yield compute
        await compute.close()


@pytest.fixture
async def compute(ssh_settings: Settings) -> AsyncIterator[SshCompute]:
    compute = SshCompute()
    await compute.start(ssh_settings)
    yield compute
    await compute.close()


async def new_service() -> Service:
    suffix = secrets.token_hex(4)
    owner = await User.create(email=f"ssh-{suffix}@example.com", name="Ssh")
    return await Service.create(owner=owner, name="app", slug=f"app-{suffix}")


async def test_the_host_key_is_pinned_in_the_host_row_on_first_use(
    compute: SshCompute, sshd: Sshd
) -> None:
    service = await new_service()
    log = ProvisionLog()
    host = await compute.host_for_service(service, log)
    row = await HostRow.get(provider="ssh", external_id="web1")
    assert (row.ssh_host_key, row.status, row.address) == (sshd.host_key, "ready", "127.0.0.1")
    assert await Service.filter(id=service.id, host_id=row.id).exists()
    assert log == [f"placed on server web1 ({sshd.user}@127.0.0.1)"]
    assert host.id == "ssh-web1"
    assert host.upstream == "127.0.0.1:8080"
    [status] = await compute.hosts()
    assert (status.id, status.status, status.vm_count) == ("ssh-web1", "ready", None)
    assert status.cpus and status.memory_total_bytes
    with pytest.raises(NotBuiltYet):
        await compute.host_stats("ssh-web1", "hour")


async def test_a_changed_host_key_is_refused_by_a_fresh_provider(
    ssh_settings: Settings, sshd: Sshd
) -> None:
    service = await new_service()
    first = SshCompute()
    await first.start(ssh_settings)
    try:
        await first.host_for_service(service, ProvisionLog())
    finally:
        await first.close()
    await sshd.rotate_host_key()
    fresh = SshCompute()
    await fresh.start(ssh_settings)
    try:
        with pytest.raises(HostKeyChanged, match="not the one pinned"):
            await fresh.host_for_service(service, ProvisionLog())
        [status] = await fresh.hosts()
        assert status.status == "unreachable"
        assert await fresh.connected_hosts() == []
    finally:
        await fresh.close()


async def test_services_spread_to_the_emptier_server(ssh_settings: Settings, sshd: Sshd) -> None:
    place = f"{sshd.user}@127.0.0.1:{sshd.port}"
    settings = ssh_settings.model_copy(update={"ssh_servers": f"a={place},b={place}"})
    compute = SshCompute()
    await compute.start(settings)
    try:
        first, second, third, fourth = [await new_service() for _ in range(4)]
        placed = [
            (await compute.host_for_service(service, ProvisionLog())).id
            for service in (first, second, third)
        ]
        assert placed == ["ssh-a", "ssh-b", "ssh-a"]
        # A deleted service no longer counts: b is empty again, a still holds two.
        await Service.filter(id=second.id).update(deleted_at=datetime.now(UTC))
        assert (await compute.host_for_service(fourth, ProvisionLog())).id == "ssh-b"
        # Placed is placed, even through a stale copy of the row.
        stale = await Service.get(id=first.id)
        stale.host = None
        assert (await compute.host_for_service(stale, ProvisionLog())).id == "ssh-a"
        assert {host.id for host in await compute.connected_hosts()} == {"ssh-a", "ssh-b"}
    finally:
        await compute.close()


async def test_existing_host_never_places(compute: SshCompute) -> None:
    service = await new_service()
    assert await compute.existing_host(service) is None
    assert await HostRow.filter(provider="ssh").count() == 0
    host = await compute.host_for_service(service, ProvisionLog())
    existing = await compute.existing_host(service)
    assert existing is not None and existing.id == host.id


async def test_no_servers_configured_says_what_to_set(migrated: Settings, tmp_path: Path) -> None:
    compute = SshCompute()
    await compute.start(migrated.model_copy(update={"ssh_key_file": tmp_path / "key"}))
    try:
        with pytest.raises(NotConfigured, match="set DIGI_SSH_SERVERS"):
            await compute.host_for_service(await new_service(), ProvisionLog())
        assert await compute.hosts() == []
    finally:
        await compute.close()


def test_servers_are_parsed() -> None:
    assert parse_servers(" web1=root@203.0.113.10 , web2=deploy@host.example.com:2222,") == [
        Server("web1", "root", "203.0.113.10"),
        Server("web2", "deploy", "host.example.com", 2222),
    ]
    assert parse_servers("v6=root@[2001:db8::1]:22,bare=root@2001:db8::2") == [
        Server("v6", "root", "2001:db8::1"),
        Server("bare", "root", "2001:db8::2"),
    ]
    assert parse_servers(None) == parse_servers("") == []


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("root@203.0.113.10", "no name="),
        ("Web_1=root@203.0.113.10", "not a DNS label"),
        ("web1=203.0.113.10", "no user@"),
        ("web1=Root Admin@203.0.113.10", "not a unix user name"),
        ("web1=root@bad_host!", "not a hostname or an IP address"),
        ("web1=root@999.1.1.1", "not a hostname or an IP address"),
        ("web1=root@203.0.113.10:0", "not a number from 1 to 65535"),
        ("web1=root@203.0.113.10:70000", "not a number from 1 to 65535"),
        ("web1=root@[2001:db8::1", "in brackets"),
        ("web1=root@a.example,web1=root@b.example", "used twice"),
    ],
)
async def test_a_bad_server_entry_is_a_clear_error(
    entry: str, reason: str, tmp_path: Path, clean_env: Path
) -> None:
    settings = load_settings(
        DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=tmp_path / "data", DIGI_SSH_SERVERS=entry
    )
    with pytest.raises(ConfigError, match=f"DIGI_SSH_SERVERS: .*{reason}") as raised:
        await SshCompute().start(settings)
    assert "name=user@address[:port]" in str(raised.value) or reason == "used twice"

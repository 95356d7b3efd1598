"""The ComputeProvider contract: what every compute provider must guarantee, as a test suite.

A provider's test module subclasses :class:`ComputeProviderContract` under a ``Test…`` name
and defines the ``provider`` fixture; pytest then runs every check here against it::

    from tests.contracts.compute import ComputeProviderContract

    class TestMyCompute(ComputeProviderContract):
        @pytest.fixture
        async def provider(self, migrated: Settings) -> AsyncIterator[ComputeProvider]:
            compute = MyCompute()
            await compute.start(migrated)
            yield compute
            await compute.close()

``migrated`` (tests/conftest.py) is a database brought up to date and opened, on SQLite and on
PostgreSQL; the ``service`` the checks hand to the provider is a row in it. A check a provider
fails on purpose for now is overridden in its own module with ``pytest.mark.xfail(strict=True)``,
so the gap stays visible and the mark goes once the provider is fixed.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from digi_core.config import Settings
from digi_core.errors import NotFound
from digi_core.models import HostStatus as HostState
from digi_core.models import Service, User
from digi_core.providers import ComputeProvider, Host

KNOWN_STATUSES = {state.value for state in HostState}
UNKNOWN_HOST_ID = "digi-contract-no-such-host"


class ProvisionLog(list[str]):
    """The LogSink a check hands to ``host_for_service``: keeps every line it gets."""

    async def __call__(self, line: str) -> None:
        self.append(line)


class ComputeProviderContract:
    """The checks of the ComputeProvider docstrings (digi_core/providers.py).

    Not collected by itself (its name does not start with ``Test``); subclass it.
    """

    @pytest.fixture
    async def provider(self) -> ComputeProvider:
        """A started provider, closed after the test: the subclass defines it."""
        pytest.fail(f"{type(self).__name__} must define the `provider` fixture")

    @pytest.fixture
    async def service(self, migrated: Settings) -> Service:
        """A fresh service row that no host was provisioned for yet."""
        suffix = secrets.token_hex(4)
        owner = await User.create(email=f"contract-{suffix}@example.com", name="Contract")
        return await Service.create(owner=owner, name="contract", slug=f"contract-{suffix}")

    async def test_close_can_be_called_again_without_raising(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        # The fixture closes it once more: an app whose shutdown runs twice must not crash.
        await provider.host_for_service(service, ProvisionLog())
        await provider.close()
        await provider.close()

    async def test_host_for_service_twice_gives_the_same_usable_host(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        first = await provider.host_for_service(service, ProvisionLog())
        again = await provider.host_for_service(service, ProvisionLog())
        assert isinstance(first, Host)
        assert again.id == first.id
        # The core runs everything through this client: it must reach a real engine.
        assert (await again.docker.version())["ApiVersion"]

    async def test_concurrent_host_for_service_makes_one_host(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        # Two workers resuming the same job at once must not provision two hosts.
        first, second = await asyncio.gather(
            provider.host_for_service(service, ProvisionLog()),
            provider.host_for_service(service, ProvisionLog()),
        )
        assert first.id == second.id

    async def test_hosts_lists_the_handed_out_host_with_a_known_status(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        # Nodes or hosts (a provider chooses), so the handed-out host's id need not be listed.
        await provider.host_for_service(service, ProvisionLog())
        statuses = await provider.hosts()
        assert statuses, "hosts() lists no host after one was handed out"
        for status in statuses:
            assert status.provider == provider.name
            assert status.status in KNOWN_STATUSES, status
            assert status.id, status

    async def test_connected_hosts_contains_the_handed_out_host(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        host = await provider.host_for_service(service, ProvisionLog())
        assert host.id in {connected.id for connected in await provider.connected_hosts()}

    async def test_existing_host_is_the_handed_out_host_and_never_provisions_one(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        before = await provider.hosts()
        found = await provider.existing_host(service)
        # A provider with nothing to provision may answer its shared host; one that
        # provisions answers None, and made nothing.
        if found is None:
            assert len(await provider.hosts()) == len(before)
        host = await provider.host_for_service(service, ProvisionLog())
        again = await provider.existing_host(service)
        assert again is not None and again.id == host.id

    async def test_release_service_is_idempotent(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        await provider.host_for_service(service, ProvisionLog())
        await provider.release_service(service)
        await provider.release_service(service)

    async def test_release_of_a_service_never_provisioned_is_no_error(
        self, provider: ComputeProvider, service: Service
    ) -> None:
        await provider.release_service(service)

    async def test_host_stats_of_an_unknown_host_raises_not_found(
        self, provider: ComputeProvider
    ) -> None:
        with pytest.raises(NotFound):
            await provider.host_stats(UNKNOWN_HOST_ID, "hour")

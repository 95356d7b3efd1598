"""The local compute provider against the shared ComputeProvider contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from digi_core.config import Settings
from digi_core.providers import ComputeProvider
from digi_local.compute import LocalCompute
from tests.contracts.compute import ComputeProviderContract


class TestLocalComputeContract(ComputeProviderContract):
    @pytest.fixture
    async def provider(self, migrated: Settings) -> AsyncIterator[ComputeProvider]:
        compute = LocalCompute()
        await compute.start(migrated)
        yield compute
        await compute.close()

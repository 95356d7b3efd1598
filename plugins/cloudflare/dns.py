"""The Cloudflare DNS provider (records arrive with the DNS work)."""

from __future__ import annotations

from collections.abc import Sequence

from digi_core.errors import NotBuiltYet
from digi_core.providers import DnsProvider, DnsRecord


class CloudflareDns(DnsProvider):
    name = "cloudflare"

    async def upsert_records(self, records: Sequence[DnsRecord]) -> None:
        raise NotBuiltYet(self.name, "upsert_records")

    async def delete_records(self, records: Sequence[DnsRecord]) -> None:
        raise NotBuiltYet(self.name, "delete_records")

    async def records(self) -> list[DnsRecord]:
        raise NotBuiltYet(self.name, "records")

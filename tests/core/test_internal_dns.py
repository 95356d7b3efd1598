"""Digi's internal DNS zone: records in the database, answered over UDP from memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.resolver
import pytest

from digi_core import internal_dns
from digi_core.config import Settings
from digi_core.errors import ConfigError
from digi_core.internal_dns import ZoneServer
from digi_core.models import InternalRecord


@pytest.fixture
async def zone(migrated: Settings) -> AsyncIterator[tuple[ZoneServer, dns.asyncresolver.Resolver]]:
    server = ZoneServer()
    await server.start(migrated.internal_dns)
    host, port = internal_dns.listen_address(migrated.internal_dns)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [host], port, 2
    yield server, resolver
    await server.close()


async def addresses(resolver: dns.asyncresolver.Resolver, name: str, kind: str = "A") -> list[str]:
    try:
        return sorted(str(item) for item in await resolver.resolve(name, kind))
    except dns.resolver.NXDOMAIN:
        return ["NXDOMAIN"]
    except dns.resolver.NoAnswer:
        return []


async def test_names_answer_their_addresses_and_unknown_ones_nxdomain(zone: Any) -> None:
    _, resolver = zone
    await internal_dns.set_records(
        "h1", {"a.u.digi.internal": ["10.0.0.1"], "B.u.digi.internal": ["::1", "10.0.0.2"]}
    )
    assert await addresses(resolver, "a.u.digi.internal") == ["10.0.0.1"]
    assert await addresses(resolver, "A.U.Digi.Internal") == ["10.0.0.1"]
    assert await addresses(resolver, "b.u.digi.internal", "AAAA") == ["::1"]
    assert await addresses(resolver, "a.u.digi.internal", "AAAA") == []  # NODATA
    assert await addresses(resolver, "a.u.digi.internal", "MX") == []
    assert await addresses(resolver, "other.u.digi.internal") == ["NXDOMAIN"]
    await internal_dns.remove_records(["a.u.digi.internal", "never.u.digi.internal"])
    assert await addresses(resolver, "a.u.digi.internal") == ["NXDOMAIN"]


async def test_garbage_gets_no_answer_and_a_question_less_query_formerr(zone: Any) -> None:
    server, _ = zone
    query = dns.message.make_query("a.u.digi.internal", "A")
    query.question = []
    assert server.answer(query).rcode() == dns.rcode.FORMERR
    before = server.queries
    server.datagram_received(b"\x00\x01garbage", ("127.0.0.1", 9))
    assert server.queries == before


async def test_another_process_write_is_answered_within_a_poll(zone: Any) -> None:
    """A `digi worker` writes the database only: the server's zone picks it up by polling."""
    _, resolver = zone
    moment = datetime.now(UTC)
    await InternalRecord.create(
        name="w.u.digi.internal", addresses="10.1.1.1", host_id="h1", updated_at=moment
    )
    await asyncio.sleep(internal_dns.POLL_SECONDS * 3)
    assert await addresses(resolver, "w.u.digi.internal") == ["10.1.1.1"]
    await InternalRecord.filter(name="w.u.digi.internal").update(
        addresses="", updated_at=datetime.now(UTC)
    )
    await asyncio.sleep(internal_dns.POLL_SECONDS * 3)
    assert await addresses(resolver, "w.u.digi.internal") == ["NXDOMAIN"]


async def test_sync_touches_only_its_host_and_suffix_and_forgets_old_tombstones(
    zone: Any,
) -> None:
    _, resolver = zone
    await internal_dns.set_records(
        "h1", {"a.u.digi.internal": ["10.0.0.1"], "a.r.digi.internal": ["10.9.9.9"]}
    )
    await internal_dns.set_records("h2", {"b.u.digi.internal": ["10.0.0.2"]})
    await internal_dns.sync_records("h1", ".u.digi.internal", {"c.u.digi.internal": ["10.0.0.3"]})
    assert await internal_dns.host_records("h1", ".u.digi.internal") == {
        "c.u.digi.internal": ("10.0.0.3",)
    }
    assert await addresses(resolver, "a.u.digi.internal") == ["NXDOMAIN"]
    assert await addresses(resolver, "a.r.digi.internal") == ["10.9.9.9"]
    assert await addresses(resolver, "b.u.digi.internal") == ["10.0.0.2"]
    old = datetime.now(UTC) - internal_dns.TOMBSTONES_KEPT - timedelta(minutes=1)
    await InternalRecord.filter(name="a.u.digi.internal").update(updated_at=old)
    await internal_dns.sync_records("h1", ".u.digi.internal", {"c.u.digi.internal": ["10.0.0.3"]})
    assert not await InternalRecord.exists(name="a.u.digi.internal")


@pytest.mark.parametrize("value", ["5354", "localhost:53", "127.0.0.1:0", "127.0.0.1:x", ""])
def test_a_bad_listen_address_says_what_to_write(value: str) -> None:
    with pytest.raises(ConfigError, match="DIGI_INTERNAL_DNS: use ip:port"):
        internal_dns.listen_address(value)

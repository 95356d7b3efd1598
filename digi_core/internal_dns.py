"""Digi's internal DNS zone: the names Caddy's dynamic upstreams look up, so that a route
moves by changing a record instead of Caddy's config (which Caddy reloads whole, resetting a
connection that arrives at that moment).

Records live in the database (``InternalRecord``), written by the router in any process.
``ZoneServer`` answers them over UDP (``DIGI_INTERNAL_DNS``) from memory: a write in the same
process reaches it at once, one in another process (a `digi worker`) within ``POLL_SECONDS``.
A removed name stays as an empty tombstone for a while, so that other processes see it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from digi_core.errors import ConfigError
from digi_core.models import InternalRecord

log = logging.getLogger(__name__)

ZONE = "digi.internal"
POLL_SECONDS = 0.25
FULL_RELOAD_SECONDS = 60.0
TOMBSTONES_KEPT = timedelta(hours=1)
# Writes of other processes may commit a little after the time they carry.
POLL_OVERLAP = timedelta(seconds=2)
TTL = 1

_servers: set[ZoneServer] = set()
"""The zone servers of this process, told of every write here at once."""


def listen_address(value: str) -> tuple[str, int]:
    """``ip:port`` (or ``[v6]:port``) of ``DIGI_INTERNAL_DNS``, checked."""
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise ConfigError(
            [f"DIGI_INTERNAL_DNS: use ip:port, for example 127.0.0.1:5354 (got {value!r})"]
        )
    return host, number


def _now() -> datetime:
    return datetime.now(UTC)


def _joined(addresses: Iterable[str]) -> str:
    return ",".join(sorted({str(ipaddress.ip_address(address)) for address in addresses}))


def _split(addresses: str) -> tuple[str, ...]:
    return tuple(address for address in addresses.split(",") if address)


async def set_records(host_id: str, records: Mapping[str, Sequence[str]]) -> None:
    """Point each name at its addresses (IPv4 or IPv6), for the host ``host_id``."""
    rows = [
        InternalRecord(
            name=name.lower(), addresses=_joined(addresses), host_id=host_id, updated_at=_now()
        )
        for name, addresses in records.items()
    ]
    if rows:
        await InternalRecord.bulk_create(
            rows,
            on_conflict=["name"],
            update_fields=["addresses", "host_id", "updated_at"],
            batch_size=1000,
        )
    _tell({row.name: _split(row.addresses) for row in rows})


async def remove_records(names: Iterable[str]) -> None:
    """Take these names out of the zone; unknown ones are fine."""
    names = [name.lower() for name in names]
    if names:
        await InternalRecord.filter(name__in=names).update(addresses="", updated_at=_now())
        _tell(dict.fromkeys(names, ()))


async def host_records(host_id: str, suffix: str) -> dict[str, tuple[str, ...]]:
    """The live records of ``host_id`` whose names end with ``suffix``."""
    rows = await InternalRecord.filter(host_id=host_id, name__endswith=suffix).exclude(addresses="")
    return {row.name: _split(row.addresses) for row in rows}


async def sync_records(host_id: str, suffix: str, records: Mapping[str, Sequence[str]]) -> None:
    """Make ``host_id``'s names under ``suffix`` exactly ``records``; forget old tombstones."""
    current = await host_records(host_id, suffix)
    wanted = {name.lower(): _split(_joined(addresses)) for name, addresses in records.items()}
    await remove_records(name for name in current if name not in wanted)
    changed = {name: value for name, value in wanted.items() if current.get(name) != value}
    if changed:
        await set_records(host_id, changed)
    await InternalRecord.filter(addresses="", updated_at__lt=_now() - TOMBSTONES_KEPT).delete()


def _tell(changes: dict[str, tuple[str, ...]]) -> None:
    for server in _servers:
        server.apply(changes)


class ZoneServer(asyncio.DatagramProtocol):
    """Answers A and AAAA questions for the zone's names from memory; NXDOMAIN otherwise."""

    def __init__(self) -> None:
        self.table: dict[str, tuple[str, ...]] = {}
        self.queries = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._poller: asyncio.Task[None] | None = None
        self._since = _now()

    async def start(self, address: str) -> None:
        """Load every record, listen on ``address`` (``ip:port``) and follow new writes."""
        host, port = listen_address(address)
        try:
            await self._load()
        except Exception as error:  # not migrated yet, say: the poll keeps trying
            log.warning("the internal DNS zone could not be read yet: %s", error)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport
        _servers.add(self)
        self._poller = asyncio.create_task(self._poll_forever())
        log.info("internal DNS zone %s answering on udp/%s:%d", ZONE, host, port)

    async def close(self) -> None:
        _servers.discard(self)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def apply(self, changes: Mapping[str, tuple[str, ...]]) -> None:
        for name, addresses in changes.items():
            if addresses:
                self.table[name] = addresses
            else:
                self.table.pop(name, None)

    async def _load(self, since: datetime | None = None) -> None:
        query = (
            InternalRecord.all() if since is None else InternalRecord.filter(updated_at__gte=since)
        )
        rows = await query.values_list("name", "addresses", "updated_at")
        if since is None:
            self.table = {}
        self.apply({name: _split(addresses) for name, addresses, _ in rows})
        self._since = max([self._since, *(moment for _, _, moment in rows)])

    async def _poll_forever(self) -> None:
        reloaded = asyncio.get_running_loop().time()
        failing = ""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if asyncio.get_running_loop().time() - reloaded > FULL_RELOAD_SECONDS:
                    await self._load()
                    reloaded = asyncio.get_running_loop().time()
                else:
                    await self._load(self._since - POLL_OVERLAP)
                failing = ""
            except Exception as error:
                if str(error) != failing:  # once per kind of failure, not at every poll
                    log.warning(
                        "the internal DNS zone cannot be read, answering what it had: %s", error
                    )
                failing = str(error)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not DNS: no answer, as a real server does
        self.queries += 1
        if self._transport is not None:
            self._transport.sendto(self.answer(query).to_wire(), addr)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        addresses = self.table.get(question.name.to_text(omit_final_dot=True).lower())
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        kind = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        matching = [a for a in addresses if ipaddress.ip_address(a).version == kind]
        if question.rdclass == dns.rdataclass.IN and matching:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, TTL, dns.rdataclass.IN, question.rdtype, matching
                )
            )
        return response

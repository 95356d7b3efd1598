"""A small authoritative DNS server for tests: UDP on 127.0.0.1, answering from a dict."""

from __future__ import annotations

import asyncio
import logging

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)


class DnsServer(asyncio.DatagramProtocol):
    """``records`` maps (name, type) to rdata in zone-file form, say ``'"a" "b"'`` for a TXT
    record of two strings. Unknown names answer NXDOMAIN; a known name's other types answer
    NOERROR with no records."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.questions: list[tuple[str, str]] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    def set(self, name: str, rdtype: str, *values: str) -> None:
        self.records[(_key(name), rdtype.upper())] = list(values)

    def remove(self, name: str, rdtype: str) -> None:
        self.records.pop((_key(name), rdtype.upper()), None)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.port = self._transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            log.warning("test DNS server: ignored a malformed query from %s", addr)
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, rdtype))
        if values := self.records.get((name, rdtype)):
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values)
            )
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)


def _key(name: str) -> str:
    return name.lower().removesuffix(".")

"""DIGI_SSH_SERVERS: the operator's list of bring-your-own servers, read and checked."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from digi_core.errors import ConfigError

VARIABLE = "DIGI_SSH_SERVERS"
EXAMPLE = "web1=root@203.0.113.10,web2=deploy@server2.example.com:2222"
# A server's name becomes part of host ids and DNS-facing names: one lowercase DNS label.
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A unix user name, as useradd's default NAME_REGEX allows (and DIGI_VM_USER).
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Server:
    """One configured server: ``name=user@address[:port]``."""

    name: str
    username: str
    address: str
    port: int = 22


def parse_servers(value: str | None) -> list[Server]:
    """Every server in ``value`` (comma separated), or a :class:`ConfigError` with one line
    per bad entry, each naming the variable and showing the expected form."""
    servers: list[Server] = []
    problems: list[str] = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            server = _parse_entry(entry)
        except ValueError as error:
            problems.append(
                f"{VARIABLE}: {entry!r}: {error}; expected name=user@address[:port], e.g. {EXAMPLE}"
            )
            continue
        if any(known.name == server.name for known in servers):
            problems.append(f"{VARIABLE}: the name {server.name!r} is used twice")
            continue
        servers.append(server)
    if problems:
        raise ConfigError(problems)
    return servers


def _parse_entry(entry: str) -> Server:
    name, equals, login = entry.partition("=")
    if not equals:
        raise ValueError("no name= before the server")
    if not NAME.match(name):
        raise ValueError(f"the name {name!r} is not a DNS label (a-z, 0-9, -; up to 63)")
    username, at, place = login.rpartition("@")
    if not at:
        raise ValueError("no user@ before the address")
    if not USER.match(username):
        raise ValueError(f"the user {username!r} is not a unix user name")
    address, port = _split_port(place)
    if not _is_address(address):
        raise ValueError(f"the address {address!r} is not a hostname or an IP address")
    return Server(name=name, username=username, address=address, port=port)


def _split_port(place: str) -> tuple[str, int]:
    """``address``, ``address:port``, ``[ipv6]`` or ``[ipv6]:port``; a bare IPv6 has no port."""
    if place.startswith("["):
        address, bracket, rest = place[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address in brackets must be [address] or [address]:port")
        return address, _port(rest[1:]) if rest else 22
    if place.count(":") == 1:
        address, _, port = place.partition(":")
        return address, _port(port)
    return place, 22


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port {text!r} is not a number from 1 to 65535")
    return int(text)


def _is_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        pass
    labels = address.removesuffix(".").split(".")
    # An all-digit last label is a mistyped IPv4 address (999.1.1.1), not a hostname.
    return (
        len(address) <= 253
        and all(HOSTNAME_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )

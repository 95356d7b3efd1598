"""Custom domains: proving ownership by a TXT record, and which names may get a certificate."""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
from tortoise.queryset import QuerySet

from digi_core import names, services
from digi_core.config import Settings
from digi_core.errors import ConfigError, DigiError
from digi_core.models import Component, DomainKind, ServiceStatus
from digi_core.models import Domain as DomainRow

log = logging.getLogger(__name__)

VERIFY_LABEL = "_digi-verify"
# How long one TXT look-up may take in all, retries included (tests shorten it).
LIFETIME_SECONDS = 5.0
NAMESERVER_FORMS = "ip, ip:port or [ipv6]:port, such as 1.1.1.1, 127.0.0.1:5353 or [::1]:53"
INACTIVE_STATUSES = (ServiceStatus.SUSPENDED, ServiceStatus.DELETING)


class DomainNotVerified(DigiError):
    """The ownership record is missing or holds another value."""

    code = "DOMAIN_NOT_VERIFIED"
    http_status = 422
    exit_code = 2

    def __init__(self, domain: DomainRow) -> None:
        super().__init__(
            f"{domain.name} is not verified yet: no TXT record {record_name(domain.name)} "
            f"with the value {domain.verification_token} was found. Create that TXT record "
            "at your DNS provider, then verify again; DNS changes can take a few minutes to "
            "be seen.",
            field="id",
        )


class DnsUnavailable(DigiError):
    """The nameservers did not answer in time, or all refused."""

    code = "DNS_UNAVAILABLE"
    http_status = 503
    exit_code = 9


def record_name(domain: str) -> str:
    """Where a custom domain's ownership TXT record lives."""
    return f"{VERIFY_LABEL}.{domain}"


def parse_nameservers(value: str | None) -> list[tuple[str, int]]:
    """DIGI_VERIFY_NAMESERVERS as (ip, port) pairs; empty when unset (the system resolver)."""
    servers = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if entry:
            servers.append(_nameserver(entry))
    return servers


def _nameserver(entry: str) -> tuple[str, int]:
    address, port = entry, "53"
    if entry.startswith("["):
        address, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _bad_nameserver(entry)
        if rest:
            port = rest[1:]
    elif entry.count(":") == 1:
        address, port = entry.split(":")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise _bad_nameserver(entry) from None
    if entry.startswith("[") and ip.version != 6:
        raise _bad_nameserver(entry)
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise _bad_nameserver(entry)
    return str(ip), int(port)


def _bad_nameserver(entry: str) -> ConfigError:
    return ConfigError(
        [f"DIGI_VERIFY_NAMESERVERS: {entry!r} is not a nameserver address; use {NAMESERVER_FORMS}"]
    )


async def txt_records(name: str, settings: Settings) -> list[str]:
    """The TXT records at ``name``, each record's strings joined; empty when there are none.

    Raises DnsUnavailable when no nameserver answers within LIFETIME_SECONDS."""
    servers = parse_nameservers(settings.verify_nameservers)
    try:
        resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
        resolver.lifetime = LIFETIME_SECONDS
        answer = await resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError) as error:
        # The nameservers' addresses are the operator's business: logged, not shown.
        log.warning("TXT look-up of %s failed: %s", name, error)
        raise DnsUnavailable(f"DNS did not answer for {name}; try again in a minute.") from None
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]


async def verify(domain: DomainRow, settings: Settings) -> bool:
    """True when the domain's TXT record holds its token; the first success sets verified_at."""
    records = await txt_records(record_name(domain.name), settings)
    if domain.verification_token not in {value.strip().strip("\"'").strip() for value in records}:
        return False
    # Conditional, so verified_at stays the first success's time even with two at once.
    await DomainRow.filter(id=domain.id, verified_at__isnull=True).update(
        verified_at=datetime.now(UTC)
    )
    await domain.refresh_from_db(fields=["verified_at"])
    return True


async def may_issue_certificate(name: str, settings: Settings) -> bool:
    """Caddy's on-demand TLS ``ask``: a verified custom domain or a platform hostname of a
    component whose service is live. False, never an error, for anything else."""
    if not name.isascii():
        return False
    try:
        name = names.validate_domain(name)
    except ValueError:
        return False
    verified = _live_components().filter(
        domains__name=name, domains__kind=DomainKind.CUSTOM, domains__verified_at__isnull=False
    )
    if await verified.exists():
        return True
    platform_domain = await services.default_domain(settings.platform_domain)
    subdomain, dot, rest = name.partition(".")
    if not dot or rest != platform_domain:
        return False
    return await _live_components().filter(subdomain=subdomain).exists()


def _live_components() -> QuerySet[Component]:
    """Components of services that are neither deleted nor suspended, with a live owner."""
    return Component.filter(
        service__deleted_at__isnull=True,
        service__owner__suspended_at__isnull=True,
        service__owner__deleted_at__isnull=True,
        service__status__not_in=INACTIVE_STATUSES,
    )

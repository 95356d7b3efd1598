"""DNS records for platform and custom domains in a Cloudflare zone."""

from __future__ import annotations

from collections.abc import Callable

from digi_cloudflare.dns import CloudflareDns
from digi_core import hookimpl
from digi_core.providers import DnsProvider


@hookimpl
def register_dns(register: Callable[[DnsProvider], None]) -> None:
    register(CloudflareDns())

"""The provider contracts: what a compute, routing, DNS, build or billing backend must do.

Each contract is one abstract class; each method's docstring states what it must guarantee.
Plugins subclass these and hand instances to the ``register_*`` hooks (see hookspecs.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from digi_core.errors import NotConfigured

if TYPE_CHECKING:
    import aiodocker

    from digi_core.config import Settings
    from digi_core.models import Coupon, Service, User

LogSink = Callable[[str], Awaitable[None]]
"""Receives one line of output (a build log, a provisioning step) as it happens."""


class Provider(ABC):
    """What every provider has: a unique ``name`` and a lifecycle around the app's."""

    name: ClassVar[str]
    """Unique within its kind; settings pick a provider by it (``DIGI_COMPUTE=local``)."""

    async def start(self, settings: Settings) -> None:  # noqa: B027 - optional hook
        """Open connections and read settings. Called once before first use; may be a no-op."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called at shutdown; idempotent, must not raise."""


@dataclass
class Host:
    """A machine that runs containers, as the core sees it.

    ``docker`` talks to the host's Docker engine (a local socket or one forwarded over SSH);
    ``caddy_admin_url`` is that host's Caddy admin API, reachable from Digi; ``upstream`` is
    where the master tier sends this host's hostnames (``ip:port`` of the host's Caddy).
    """

    id: str
    docker: aiodocker.Docker
    caddy_admin_url: str
    upstream: str
    caddy_admin_host: str | None = None
    """The Host header that Caddy's admin API expects (it refuses others), when
    ``caddy_admin_url`` is a forward to it rather than its own address."""


@dataclass
class HostStatus:
    """One host or node as an operator sees it; resources are ``None`` when unknown."""

    id: str
    provider: str
    name: str
    status: str
    cpu_fraction: float | None = None
    cpus: int | None = None
    memory_bytes: int | None = None
    memory_total_bytes: int | None = None
    disk_bytes: int | None = None
    disk_total_bytes: int | None = None
    vm_count: int | None = None


@dataclass
class StatsPoint:
    """One sample of a host's usage series."""

    time: datetime
    cpu_fraction: float | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    network_in_bytes: float | None = None
    network_out_bytes: float | None = None


class ComputeProvider(Provider):
    """Where a service's containers run: hands the core a :class:`Host` per service."""

    @abstractmethod
    async def host_for_service(self, service: Service, log: LogSink) -> Host:
        """Return the host that runs ``service``, provisioning it first when there is none.

        Idempotent and resumable: calling it again after a crash continues or reuses what
        was provisioned, never creates a second host. A failed provision removes what it
        created and raises a :class:`~digi_core.errors.DigiError` saying why.
        """

    @abstractmethod
    async def release_service(self, service: Service) -> None:
        """Destroy what was provisioned for ``service`` alone (a VM, not a shared engine).

        Called after its containers and routes are gone. Idempotent: no error when nothing
        is left.
        """

    async def existing_host(self, service: Service) -> Host | None:
        """The host already provisioned for ``service``, or ``None``; never provisions.

        Everything but a deploy uses this (routes, logs, stop, delete, the reconciler), so
        that looking at a service never creates a VM. The default suits providers with
        nothing to provision: it asks :meth:`host_for_service`.
        """
        return await self.host_for_service(service, _discard)

    async def add_node(self, name: str, options: dict[str, Any]) -> HostStatus:
        """Add a node (a hypervisor, a server) this provider places hosts on, after checking
        ``options`` (provider-specific) against the node itself; raises a
        :class:`~digi_core.errors.DigiError` with the node's own reason when they fail."""
        raise NotConfigured(f"the {self.name} compute provider has no nodes to add")

    async def remove_node(self, node_id: str) -> None:
        """Remove a node; refused with :class:`~digi_core.errors.Conflict` while it still
        hosts services. Raises :class:`~digi_core.errors.NotFound` for an unknown id."""
        raise NotConfigured(f"the {self.name} compute provider has no nodes to remove")

    async def grow_storage(self, service: Service, storage_gb: int) -> bool:
        """Make the service's own disk at least ``storage_gb`` GB (never shrink); answers
        whether it grew. Default: nothing of the service's own to grow (a shared engine)."""
        return False

    async def repair(self) -> Counter[str]:
        """Compare what the provider runs with Digi's rows and repair the difference (a VM
        without a row, a row whose VM is gone, a disk smaller than the plan's); answers the
        repairs made, by kind. Called by the reconciler every pass. Default: nothing."""
        return Counter()

    async def connected_hosts(self) -> list[Host]:
        """The hosts handed out so far that are still there, for the reconciler to look for
        containers no service owns any more. Default: none."""
        return []

    @abstractmethod
    async def hosts(self) -> list[HostStatus]:
        """List the hosts or nodes this provider manages, with live status (one of
        :class:`digi_core.models.HostStatus`'s values) and resources."""

    @abstractmethod
    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        """Usage series of one host over ``timeframe`` (hour, day, week, month, year).

        Raises :class:`~digi_core.errors.NotFound` for an unknown ``host_id``.
        """


async def _discard(line: str) -> None:
    """A LogSink for lookups, which provision nothing worth telling."""


class Unavailable(StrEnum):
    """Why a known hostname has nothing to send traffic to; the router answers a 503 page."""

    NOT_DEPLOYED = "not-deployed"
    STOPPED = "stopped"
    FAILED = "failed"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Route:
    """A public hostname and the ``container:port`` on the host's network that serves it, or
    (``upstream`` None) why nothing does."""

    hostname: str
    upstream: str | None
    unavailable: Unavailable | None = None


class Router(Provider):
    """How a hostname reaches a container: routes on a host, and the host on the master."""

    settle_seconds: float = 0.0
    """How long after :meth:`set_routes` returns traffic may still reach the old upstream
    (a cached lookup): the old container must keep serving that long."""

    @abstractmethod
    async def set_routes(self, host: Host, routes: Sequence[Route]) -> None:
        """Add or replace these routes on ``host`` (and make the master send them there).

        All in one batch; other routes are untouched. Idempotent. Traffic for a replaced
        hostname moves to the new upstream without a failed request.
        """

    @abstractmethod
    async def remove_routes(self, host: Host, hostnames: Sequence[str]) -> None:
        """Stop routing these hostnames. Idempotent: an unknown hostname is not an error."""

    @abstractmethod
    async def routes(self, host: Host) -> list[Route]:
        """The routes ``host`` actually holds now, read from the router, not from Digi."""

    @abstractmethod
    async def sync(self, host: Host, routes: Sequence[Route]) -> None:
        """Make ``host`` hold exactly ``routes``: add the missing, fix the changed, remove
        the rest. Used at start-up and by the reconciler."""


@dataclass(frozen=True)
class DnsRecord:
    """One DNS record; ``name`` is fully qualified without the trailing dot."""

    name: str
    type: str
    content: str
    ttl: int = 300


class DnsProvider(Provider):
    """Records for platform and custom domains in a zone the provider controls."""

    @abstractmethod
    async def upsert_records(self, records: Sequence[DnsRecord]) -> None:
        """Create each record, or update the one with the same name and type. Idempotent."""

    @abstractmethod
    async def delete_records(self, records: Sequence[DnsRecord]) -> None:
        """Delete the records with these names and types. Idempotent: missing is fine."""

    @abstractmethod
    async def records(self) -> list[DnsRecord]:
        """Every record the provider manages for Digi, read from the provider."""


@dataclass
class BuildResult:
    """What a build produced: the image reference and how many layers came from cache."""

    image: str
    cached_steps: int = 0
    total_steps: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class Builder(Provider):
    """Turns a source tree into an image on the host where it will run."""

    @abstractmethod
    async def can_build(self, source_dir: Path, dockerfile: str | None = None) -> str | None:
        """``None`` when this builder can build ``source_dir`` (``dockerfile``: the path the
        component names, relative to the tree), else the reason it cannot, phrased for the
        user (what is missing and what to add)."""

    @abstractmethod
    async def build(
        self, host: Host, source_dir: Path, tag: str, log: LogSink, dockerfile: str | None = None
    ) -> BuildResult:
        """Build ``source_dir`` into an image tagged ``tag`` on ``host``.

        Streams every output line to ``log`` as it comes. Raises
        :class:`~digi_core.errors.DigiError` with the failing step on a failed build.
        """


class BillingProvider(Provider):
    """Plans, checkout, subscriptions, coupons and the provider's webhooks."""

    @abstractmethod
    async def create_checkout_session(
        self, user: User, plan: str, success_url: str, cancel_url: str
    ) -> str:
        """Start a checkout for ``plan``; return the URL to send the user to."""

    @abstractmethod
    async def upgrade_storage(self, user: User, blocks: int) -> None:
        """Bill ``blocks`` extra storage blocks from now on (the total, not a delta)."""

    @abstractmethod
    async def handle_webhook(self, body: bytes, signature: str) -> None:
        """Verify and apply one webhook delivery.

        Raises :class:`~digi_core.errors.BadUserInput` for a bad signature or body.
        Idempotent per event id (the core records processed events).
        """

    @abstractmethod
    async def create_coupon(self, coupon: Coupon) -> str:
        """Create ``coupon`` at the provider; return the provider's id for it."""

    @abstractmethod
    async def deactivate_coupon(self, coupon: Coupon) -> None:
        """Stop ``coupon`` from being redeemed. Idempotent."""

    @abstractmethod
    async def apply_coupon(self, user: User, coupon: Coupon) -> None:
        """Apply ``coupon`` to ``user``'s subscription."""

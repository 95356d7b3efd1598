"""Every hook Digi defines: the contract between the core and its plugins.

Registration hooks receive a ``register`` callable and hand it provider objects; the async work
lives on those objects (simonw/llm's pattern). Hooks stay synchronous because pluggy cannot
await. Parameters never have defaults: pluggy drops them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from digi_core.models import Deployment, Service
    from digi_core.providers import BillingProvider, Builder, ComputeProvider, DnsProvider, Router

hookspec = pluggy.HookspecMarker("digi")


@hookspec
def register_compute(register: Callable[[ComputeProvider], None]) -> None:
    """Register compute providers: where a service's containers run.

    Call ``register(provider)`` once per :class:`~digi_core.providers.ComputeProvider`. The
    setting ``DIGI_COMPUTE`` picks the one in use by its ``name``.
    """


@hookspec
def register_routers(register: Callable[[Router], None]) -> None:
    """Register routers: how a public hostname reaches a container.

    Call ``register(router)`` once per :class:`~digi_core.providers.Router`.
    """


@hookspec
def register_dns(register: Callable[[DnsProvider], None]) -> None:
    """Register DNS providers: records for platform and custom domains.

    Call ``register(provider)`` once per :class:`~digi_core.providers.DnsProvider`.
    """


@hookspec
def register_builders(register: Callable[[Builder], None]) -> None:
    """Register builders: turn a source tree into an image on a host.

    Call ``register(builder)`` once per :class:`~digi_core.providers.Builder`. Builders are
    asked in registration order whether they can build a source; the first that can, does.
    """


@hookspec
def register_billing(register: Callable[[BillingProvider], None]) -> None:
    """Register billing providers: plans, checkout, webhooks, coupons.

    Call ``register(provider)`` once per :class:`~digi_core.providers.BillingProvider`.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``digi`` CLI.

    ``cli`` is the top-level click group: use ``@cli.command()`` or ``cli.add_command(...)``.
    """


@hookspec
def register_console_screens(register: Callable[[str, Any], None]) -> None:
    """Add screens to the operator console.

    Call ``register(title, screen_class)`` where ``screen_class`` is a Textual ``Screen``
    subclass; the console lists it in its command palette.
    """


@hookspec
def deployment_finished(deployment: Deployment, service: Service) -> Any:
    """A deployment reached a final status (``running``, ``failed`` or ``cancelled``).

    For notifications (chat, email, webhooks). May return a coroutine; the core awaits it.
    An exception raised here is logged and never fails the deployment.
    """


@hookspec
def service_deleted(service: Service) -> Any:
    """A service and everything it ran were removed.

    May return a coroutine; the core awaits it. Exceptions are logged and ignored.
    """

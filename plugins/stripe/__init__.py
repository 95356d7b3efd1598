"""Billing through Stripe: Checkout, subscriptions, coupons and webhooks."""

from __future__ import annotations

from collections.abc import Callable

from digi_core import hookimpl
from digi_core.providers import BillingProvider
from digi_stripe.billing import StripeBilling


@hookimpl
def register_billing(register: Callable[[BillingProvider], None]) -> None:
    register(StripeBilling())

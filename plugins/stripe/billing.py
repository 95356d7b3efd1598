"""The Stripe billing provider (billing arrives with the billing work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digi_core.errors import NotBuiltYet
from digi_core.providers import BillingProvider

if TYPE_CHECKING:
    from digi_core.models import Coupon, User


class StripeBilling(BillingProvider):
    name = "stripe"

    async def create_checkout_session(
        self, user: User, plan: str, success_url: str, cancel_url: str
    ) -> str:
        raise NotBuiltYet(self.name, "create_checkout_session")

    async def upgrade_storage(self, user: User, blocks: int) -> None:
        raise NotBuiltYet(self.name, "upgrade_storage")

    async def handle_webhook(self, body: bytes, signature: str) -> None:
        raise NotBuiltYet(self.name, "handle_webhook")

    async def create_coupon(self, coupon: Coupon) -> str:
        raise NotBuiltYet(self.name, "create_coupon")

    async def deactivate_coupon(self, coupon: Coupon) -> None:
        raise NotBuiltYet(self.name, "deactivate_coupon")

    async def apply_coupon(self, user: User, coupon: Coupon) -> None:
        raise NotBuiltYet(self.name, "apply_coupon")

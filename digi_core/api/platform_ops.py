"""GraphQL operations on domains, billing and coupons."""

from __future__ import annotations

import secrets
from datetime import datetime

import strawberry
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from digi_core import domains
from digi_core.api.auditing import mutation
from digi_core.api.context import Info
from digi_core.api.types import CheckoutSession, Coupon, Domain, PlanEnum, User
from digi_core.deploys import routing
from digi_core.errors import BadUserInput, Conflict, Forbidden, NotConfigured, NotFound, PlanLimit
from digi_core.models import Component, DomainKind, Plan, Role
from digi_core.models import Coupon as CouponRow
from digi_core.models import Domain as DomainRow
from digi_core.names import record_id, validate_custom_domain, validate_domain
from digi_core.plans import check_storage_blocks, grow_disks
from digi_core.providers import BillingProvider


def _billing(info: Info) -> BillingProvider:
    if not info.context.settings.billing_enabled:
        raise NotConfigured(
            "billing is off on this platform: the operator sets STRIPE_SECRET_KEY to turn it on"
        )
    return info.context.registry.get(BillingProvider, "stripe")


@strawberry.input
class CouponInput:
    code: str
    percent_off: int | None = None
    amount_off_pence: int | None = None
    duration: str = "once"
    duration_in_months: int | None = None
    max_redemptions: int | None = None
    expires_at: datetime | None = None

    def validate(self) -> None:
        if not (
            3 <= len(self.code) <= 64 and self.code.replace("-", "").replace("_", "").isalnum()
        ):
            raise BadUserInput("code needs 3-64 letters, digits, - or _", field="code")
        if (self.percent_off is None) == (self.amount_off_pence is None):
            raise BadUserInput(
                "give exactly one of percentOff and amountOffPence", field="percentOff"
            )
        if self.percent_off is not None and not 1 <= self.percent_off <= 100:
            raise BadUserInput("percentOff must be 1-100", field="percentOff")
        if self.amount_off_pence is not None and self.amount_off_pence < 1:
            raise BadUserInput("amountOffPence must be positive", field="amountOffPence")
        if self.duration not in {"once", "repeating", "forever"}:
            raise BadUserInput("duration is once, repeating or forever", field="duration")
        if (self.duration == "repeating") != (self.duration_in_months is not None):
            raise BadUserInput(
                "durationInMonths goes with duration repeating, and only with it",
                field="durationInMonths",
            )
        if self.max_redemptions is not None and self.max_redemptions < 1:
            raise BadUserInput("maxRedemptions must be positive", field="maxRedemptions")


@strawberry.type
class PlatformQuery:
    @strawberry.field(description="The platform domains, and the caller's custom domains.")
    async def domains(self, info: Info) -> list[Domain]:
        user = await info.context.require_user()
        query = DomainRow.filter(Q(kind=DomainKind.PLATFORM) | Q(owner=user))
        return [Domain.of(row) for row in await query.order_by("kind", "name")]

    @strawberry.field(description="Every coupon (admins only).")
    async def coupons(self, info: Info) -> list[Coupon]:
        await info.context.require_admin()
        return [Coupon.of(row) for row in await CouponRow.all().order_by("-created_at")]


@strawberry.type
class PlatformMutation:
    @mutation(
        "domain",
        description="With componentId: a custom domain for your component (Pro plan), to verify "
        "by the TXT record in the answer. Without: a platform domain (admins only).",
    )
    async def add_domain(
        self, info: Info, domain: str, component_id: strawberry.ID | None = None
    ) -> Domain:
        user = await info.context.require_user()
        if component_id is None:
            if user.role is not Role.ADMIN:
                raise Forbidden("platform domains are for admins: give componentId for yours")
            try:
                name = validate_domain(domain)
            except ValueError as error:
                raise BadUserInput(str(error), field="domain") from None
            if await DomainRow.exists(name=name):
                raise Conflict(f"{name} is registered already", field="domain")
            is_first = not await DomainRow.exists(kind=DomainKind.PLATFORM)
            row = await DomainRow.create(name=name, kind=DomainKind.PLATFORM, is_default=is_first)
            return Domain.of(row)
        component = await Component.get_or_none(
            id=record_id(component_id, "component", field="componentId"),
            service__owner=user,
            service__deleted_at__isnull=True,
        )
        if component is None:
            raise NotFound(f"you have no component {component_id}", field="componentId")
        if user.plan is not Plan.PRO:
            raise PlanLimit("custom domains need the Pro plan: upgrade with createCheckoutSession")
        platform = [row.name for row in await DomainRow.filter(kind=DomainKind.PLATFORM)]
        platform.append(info.context.settings.platform_domain)
        name = validate_custom_domain(domain, platform_domains=platform)
        if await DomainRow.exists(name=name):
            raise Conflict(f"{name} is in use already", field="domain")
        row = await DomainRow.create(
            name=name,
            kind=DomainKind.CUSTOM,
            owner=user,
            component=component,
            verification_token=f"digi-verify={secrets.token_hex(16)}",
        )
        return Domain.of(row)

    @mutation("domain", description="Remove your custom domain, or (admins) a platform domain.")
    async def remove_domain(self, info: Info, id: strawberry.ID) -> bool:
        user = await info.context.require_user()
        row = await DomainRow.get_or_none(id=record_id(id, "domain"))
        if row is None or (row.kind is DomainKind.CUSTOM and row.owner_id != user.id):  # type: ignore[attr-defined]
            raise NotFound(f"no domain {id}", field="id")
        if row.kind is DomainKind.PLATFORM:
            if user.role is not Role.ADMIN:
                raise Forbidden("platform domains are for admins")
            if row.is_default:
                raise Conflict("make another platform domain the default first", field="id")
        await row.delete()
        if row.kind is DomainKind.CUSTOM and row.verified_at is not None:
            component = await Component.get(id=row.component_id)  # type: ignore[attr-defined]
            service = await component.service
            await routing.unroute(info.context.deploy_deps, service, [row.name])
        return True

    @mutation(
        "domain",
        description="Look up your custom domain's TXT record (verificationRecord); once it "
        "matches, the domain is verified. A verified domain is answered as it is.",
    )
    async def verify_domain(self, info: Info, id: strawberry.ID) -> Domain:
        user = await info.context.require_user()
        row = await DomainRow.get_or_none(
            id=record_id(id, "domain"), kind=DomainKind.CUSTOM, owner=user
        )
        if row is None:
            raise NotFound(f"no custom domain {id} of yours", field="id")
        if row.verified_at is None:
            if not await domains.verify(row, info.context.settings):
                raise domains.DomainNotVerified(row)
            component = await Component.get(id=row.component_id)  # type: ignore[attr-defined]
            await routing.refresh_routes(info.context.deploy_deps, await component.service)
        return Domain.of(row)

    @mutation("domain", description="Make a platform domain the default for new URLs (admins).")
    async def set_domain_default(self, info: Info, id: strawberry.ID) -> Domain:
        await info.context.require_admin()
        row = await DomainRow.get_or_none(id=record_id(id, "domain"), kind=DomainKind.PLATFORM)
        if row is None:
            raise NotFound(f"no platform domain {id}", field="id")
        async with in_transaction():
            await DomainRow.filter(is_default=True).update(is_default=False)
            row.is_default = True
            await row.save(update_fields=["is_default"])
        return Domain.of(row)

    @mutation("billing", description="Start a checkout for a plan; answers the URL to open.")
    async def create_checkout_session(self, info: Info, plan: PlanEnum) -> CheckoutSession:  # type: ignore[valid-type]
        user = await info.context.require_user()
        if Plan(plan) is Plan.FREE:
            raise BadUserInput("the free plan needs no checkout", field="plan")
        base = info.context.settings.base_url
        url = await _billing(info).create_checkout_session(
            user, Plan(plan).value, f"{base}/billing/success", f"{base}/billing/cancel"
        )
        return CheckoutSession(url=url)

    @mutation("billing", description="Set how many extra 32 GB storage blocks you pay for.")
    async def upgrade_storage(self, info: Info, blocks: int) -> User:
        user = await info.context.require_user()
        check_storage_blocks(blocks, "blocks")
        if user.plan is not Plan.PRO:
            raise PlanLimit("storage upgrades need the Pro plan")
        await _billing(info).upgrade_storage(user, blocks)
        user.extra_storage_blocks = blocks
        await user.save(update_fields=["extra_storage_blocks", "updated_at"])
        await grow_disks(info.context.deploy_deps, user)
        return User.of(user)

    @mutation("coupon", description="Create a coupon (admins only).")
    async def create_coupon(self, info: Info, input: CouponInput) -> Coupon:
        admin = await info.context.require_admin()
        input.validate()
        billing = _billing(info)
        if await CouponRow.exists(code=input.code):
            raise Conflict(f"coupon {input.code} exists already", field="code")
        row = CouponRow(
            code=input.code,
            percent_off=input.percent_off,
            amount_off_pence=input.amount_off_pence,
            duration=input.duration,
            duration_in_months=input.duration_in_months,
            max_redemptions=input.max_redemptions,
            expires_at=input.expires_at,
            created_by=admin,
        )
        row.external_id = await billing.create_coupon(row)
        await row.save()
        return Coupon.of(row)

    @mutation("coupon", description="Stop a coupon from being redeemed (admins only).")
    async def deactivate_coupon(self, info: Info, id: strawberry.ID) -> Coupon:
        await info.context.require_admin()
        row = await _coupon(id)
        await _billing(info).deactivate_coupon(row)
        row.active = False
        await row.save(update_fields=["active"])
        return Coupon.of(row)

    @mutation("coupon", description="Delete a coupon that was never redeemed (admins only).")
    async def delete_coupon(self, info: Info, id: strawberry.ID) -> bool:
        await info.context.require_admin()
        row = await _coupon(id)
        if row.times_redeemed:
            raise Conflict("a redeemed coupon can only be deactivated", field="id")
        await _billing(info).deactivate_coupon(row)
        await row.delete()
        return True

    @mutation("coupon", description="Apply a coupon code to your subscription.")
    async def apply_coupon(self, info: Info, code: str) -> User:
        user = await info.context.require_user()
        billing = _billing(info)
        row = await CouponRow.get_or_none(code=code, active=True)
        if row is None:
            raise NotFound(f"no active coupon {code}", field="code")
        await billing.apply_coupon(user, row)
        return User.of(user)


async def _coupon(coupon_id: strawberry.ID) -> CouponRow:
    row = await CouponRow.get_or_none(id=record_id(coupon_id, "coupon"))
    if row is None:
        raise NotFound(f"no coupon {coupon_id}", field="id")
    return row

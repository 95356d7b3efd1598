"""GraphQL operations on `digi.toml` stacks: apply one to a new service or to an existing one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import strawberry

from digi_core import references, services
from digi_core.api.auditing import mutation
from digi_core.api.context import Info
from digi_core.api.types import Service
from digi_core.crypto import SecretBox
from digi_core.errors import Conflict
from digi_core.models import Component, EnvVar
from digi_core.models import Service as ServiceRow
from digi_core.services import ComponentSpec
from digi_core.stack import Stack, parse_stack

# A component attribute as the spec names it, and as the table does.
COMPARED_ATTRIBUTES = (
    ("image", "image"),
    ("repo_url", "repo_url"),
    ("branch", "branch"),
    ("commit", "commit"),
    ("dockerfile", "dockerfile"),
    ("start_command", "start_command"),
    ("port", "internal_port"),
    ("healthcheck_path", "healthcheck_path"),
)


@strawberry.type(description="What applyStack did, by component name.")
class ApplyStackResult:
    service: Service
    created: list[str] = strawberry.field(description="Components added.")
    updated: list[str] = strawberry.field(description="Components whose settings or env changed.")
    removed: list[str] = strawberry.field(description="Components removed (only with prune).")
    unchanged: list[str] = strawberry.field(description="Components already as the file says.")
    # Not in the schema: api/auditing.py records the result's ``id`` as the mutation's target.
    id: strawberry.Private[int]


@dataclass
class _Changes:
    """What applying a stack to a service will do."""

    create: list[ComponentSpec] = field(default_factory=list)
    update: list[ComponentSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@strawberry.type
class StackMutation:
    @mutation(
        "service",
        description="Apply a digi.toml: without serviceId create the service it names; with "
        "it, add the components the file adds, change the ones it changes and, only with "
        "prune, remove the ones it leaves out. Env vars in the file are set, others are kept. "
        "Nothing is deployed: call deployService next.",
    )
    async def apply_stack(
        self,
        info: Info,
        toml: str,
        service_id: strawberry.ID | None = None,
        prune: bool = False,
    ) -> ApplyStackResult:
        user = await info.context.require_user()
        # Ownership first: someone else's service answers NOT_FOUND whatever the file says.
        row = None if service_id is None else await services.service_for(user, service_id)
        stack = parse_stack(toml)
        box = info.context.box
        if row is None:
            specs = stack.component_specs()
            _check_references(specs, [], {})
            row = await services.create_service(user, stack.name, specs, box)
            changes = _Changes(create=specs)
        else:
            changes = await _apply_to(row, stack, box, prune=prune)
        created = [spec.name for spec in changes.create]
        updated = [spec.name for spec in changes.update]
        info.context.audit_metadata.update(
            created=created, updated=updated, removed=changes.remove, prune=prune
        )
        await row.fetch_related("components")
        domain = await info.context.default_domain()
        return ApplyStackResult(
            service=Service.of(row, domain, info.context.settings.app_url),
            created=created,
            updated=updated,
            removed=changes.remove,
            unchanged=changes.unchanged,
            id=row.id,
        )


async def _apply_to(row: ServiceRow, stack: Stack, box: SecretBox, *, prune: bool) -> _Changes:
    """Bring an existing service to what ``stack`` says; references are checked first, so a
    refused file changes nothing."""
    existing = {component.name: component for component in await row.components}
    stored_env = await _stored_env(row, box)
    specs = stack.component_specs()
    in_file = {spec.name for spec in specs}
    kept = [component for name, component in existing.items() if name not in in_file]
    changes = _Changes(remove=[component.name for component in kept] if prune else [])
    _check_references(specs, [] if prune else kept, stored_env)
    for spec in specs:
        current = existing.get(spec.name)
        if current is None:
            changes.create.append(spec)
        elif current.type is not spec.type:
            raise Conflict(
                f"component {spec.name} is a {current.type.value} component and the file makes "
                f"it {spec.type.value}: rename it in the file, or remove it first (prune)",
                field="toml",
            )
        elif _differs(current, spec, stored_env.get(spec.name, {})):
            changes.update.append(spec)
        else:
            changes.unchanged.append(spec.name)
    if changes.create or changes.update or changes.remove or row.name != stack.name:
        await services.update_service(
            row,
            box,
            name=stack.name if row.name != stack.name else None,
            components=[*changes.create, *changes.update],
            remove_components=changes.remove,
        )
    return changes


def _check_references(
    specs: Sequence[ComponentSpec],
    kept: Sequence[Component],
    stored_env: Mapping[str, Mapping[str, str]],
) -> None:
    """Every ``${{component.VARIABLE}}`` in the file names a component the service will have
    and a variable it will get: its env (from the file or set before), the service-wide env,
    and what the platform gives it (PORT, a database's URL)."""
    service_wide = set(stored_env.get("", {}))
    known: dict[str, set[str]] = {}
    for spec in specs:
        known[spec.name] = (
            set(references.provided_variables(spec.type, port=spec.port))
            | set(spec.env)
            | set(stored_env.get(spec.name, {}))
            | service_wide
        )
    for component in kept:
        known[component.name] = (
            set(references.provided_variables(component.type, port=component.internal_port))
            | set(stored_env.get(component.name, {}))
            | service_wide
        )
    for spec in specs:
        references.check(spec.env, known, component=spec.name)


def _differs(component: Component, spec: ComponentSpec, stored_env: Mapping[str, str]) -> bool:
    if any(
        getattr(spec, wanted) != getattr(component, stored)
        for wanted, stored in COMPARED_ATTRIBUTES
    ):
        return True
    return any(stored_env.get(key) != value for key, value in spec.env.items())


async def _stored_env(row: ServiceRow, box: SecretBox) -> dict[str, dict[str, str]]:
    """The service's env vars by scope ("" for service-wide, else the component's name)."""
    stored: dict[str, dict[str, str]] = {}
    for variable in await EnvVar.filter(service=row):
        stored.setdefault(variable.scope, {})[variable.key] = box.decrypt(variable.value_encrypted)
    return stored

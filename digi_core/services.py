"""Services as data: create, change and delete services, their components and env vars."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from digi_core import names, references
from digi_core.crypto import SecretBox
from digi_core.errors import BadUserInput, Conflict, NotFound
from digi_core.models import (
    Component,
    ComponentType,
    Domain,
    DomainKind,
    EnvVar,
    Role,
    Service,
    ServiceStatus,
    User,
)

MAX_COMPONENTS = 10
MAX_ENV_VARS_PER_CALL = 200
# Components that serve the app's URL; databases are reached inside the service's network.
APP_TYPES = {ComponentType.GITHUB, ComponentType.DOCKER, ComponentType.UPLOAD}
SLUG_ATTEMPTS = 5


@dataclass
class ComponentSpec:
    """A component as a user describes it, before validation."""

    name: str
    type: ComponentType
    image: str | None = None
    repo_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    dockerfile: str | None = None
    start_command: str | None = None
    port: int | None = None
    healthcheck_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def validated_spec(spec: ComponentSpec) -> ComponentSpec:
    """``spec`` checked and normalised in place as it will be stored (a repo's branch defaults
    to main); BadUserInput names the API field at fault."""
    spec.name = names.validate_component_name(spec.name)
    if spec.type is ComponentType.DOCKER and not spec.image:
        raise BadUserInput(
            f"component {spec.name}: a docker component needs an image", field="image"
        )
    if spec.type is ComponentType.GITHUB and not spec.repo_url:
        raise BadUserInput(
            f"component {spec.name}: a github component needs a repoUrl", field="repoUrl"
        )
    if spec.image:
        spec.image = names.validate_image_reference(spec.image)
    if spec.repo_url:
        spec.repo_url = names.validate_git_url(spec.repo_url)
        spec.branch = names.validate_branch(spec.branch or "main")
    elif spec.branch:
        raise BadUserInput("a branch needs a repoUrl", field="branch")
    if spec.commit:
        spec.commit = names.validate_commit(spec.commit)
    if spec.dockerfile is not None:
        spec.dockerfile = _relative_path(spec.dockerfile, "dockerfile")
    if spec.start_command is not None and (
        len(spec.start_command) > 4096 or "\x00" in spec.start_command
    ):
        raise BadUserInput(
            "startCommand must be at most 4096 characters, without NUL", field="startCommand"
        )
    if spec.port is not None:
        spec.port = names.validate_port(spec.port)
    if spec.healthcheck_path is not None:
        spec.healthcheck_path = names.validate_healthcheck_path(spec.healthcheck_path)
    spec.env = _validated_env(spec.env)
    return spec


def _relative_path(value: str, what: str) -> str:
    parts = value.split("/")
    if (
        not value
        or len(value) > 255
        or value.startswith("/")
        or ".." in parts
        or any(not part.isprintable() for part in parts)
    ):
        raise BadUserInput(f"{what} must be a relative path inside the source", field=what)
    return value


def _validated_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > MAX_ENV_VARS_PER_CALL:
        raise BadUserInput(f"at most {MAX_ENV_VARS_PER_CALL} variables at once", field="vars")
    return {
        names.validate_env_key(key): names.validate_env_value(value) for key, value in env.items()
    }


def visible_services(user: User) -> QuerySet[Service]:
    """The services ``user`` may see: their own, or every one for an admin."""
    query = Service.filter(deleted_at__isnull=True)
    return query if user.role is Role.ADMIN else query.filter(owner=user)


async def service_for(user: User, service_id: int | str) -> Service:
    """A service the user may act on; NOT_FOUND for anyone else's (existence is not leaked)."""
    query = Service.filter(id=names.record_id(service_id, "service"), deleted_at__isnull=True)
    if user.role is not Role.ADMIN:
        query = query.filter(owner=user)
    service = await query.first()
    if service is None:
        raise NotFound(f"no service {service_id}: `digi services list` shows yours", field="id")
    return service


async def create_service(
    owner: User, name: str, components: Sequence[ComponentSpec], box: SecretBox
) -> Service:
    name = names.validate_service_name(name)
    specs = [validated_spec(spec) for spec in components]
    if not specs:
        raise BadUserInput("a service needs at least one component", field="components")
    if len(specs) > MAX_COMPONENTS:
        raise BadUserInput(f"a service has at most {MAX_COMPONENTS} components", field="components")
    _check_unique_names(spec.name for spec in specs)
    for attempt in range(SLUG_ATTEMPTS):
        try:
            async with in_transaction():
                service = await Service.create(owner=owner, name=name, slug=names.new_slug(name))
                primary = next((spec for spec in specs if spec.type in APP_TYPES), None)
                for spec in specs:
                    await _create_component(service, spec, box, primary=spec is primary)
            return service
        except IntegrityError:
            if attempt == SLUG_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def update_service(
    service: Service,
    box: SecretBox,
    *,
    name: str | None = None,
    components: Sequence[ComponentSpec] = (),
    remove_components: Sequence[str] = (),
) -> Service:
    """Rename (the slug and URLs stay), add or change components by name, remove some."""
    specs = [validated_spec(spec) for spec in components]
    _check_unique_names(spec.name for spec in specs)
    async with in_transaction():
        if name is not None:
            service.name = names.validate_service_name(name)
            await service.save(update_fields=["name", "updated_at"])
        existing = {component.name: component for component in await service.components}
        for component_name in remove_components:
            if component_name not in existing:
                raise NotFound(
                    f"service has no component {component_name}", field="removeComponents"
                )
            await existing.pop(component_name).delete()
        for spec in specs:
            current = existing.get(spec.name)
            if current is None:
                has_primary = any(component.is_primary for component in existing.values())
                existing[spec.name] = await _create_component(
                    service, spec, box, primary=spec.type in APP_TYPES and not has_primary
                )
                continue
            if current.type is not spec.type:
                raise Conflict(
                    f"component {spec.name} is a {current.type.value} component: remove it "
                    f"and add a new {spec.type.value} one",
                    field="type",
                )
            for attribute in (
                "image",
                "repo_url",
                "branch",
                "commit",
                "dockerfile",
                "start_command",
                "healthcheck_path",
            ):
                setattr(current, attribute, getattr(spec, attribute))
            current.internal_port = spec.port
            await current.save()
            if spec.env:
                await _set_env(service, current, spec.env, box)
        if not existing:
            raise BadUserInput("a service needs at least one component", field="removeComponents")
    return service


async def delete_service(service: Service) -> list[str]:
    """Mark the service deleted (its slug is never reused) and say what goes with it."""
    components = await service.components
    removed = [f"service {service.name} ({service.slug})"]
    removed += [f"component {component.name} ({component.type.value})" for component in components]
    volumes = [
        c.name for c in components if c.type in {ComponentType.POSTGRES, ComponentType.REDIS}
    ]
    removed += [f"data volume of {name}" for name in volumes]
    removed.append(f"{await EnvVar.filter(service=service).count()} env var(s)")
    service.status = ServiceStatus.DELETING
    service.deleted_at = datetime.now(UTC)
    await service.save(update_fields=["status", "deleted_at", "updated_at"])
    await EnvVar.filter(service=service).delete()
    return removed


async def default_domain(platform_domain: str) -> str:
    """The domain apps live under: the admins' default platform domain, else PLATFORM_DOMAIN."""
    row = await Domain.get_or_none(kind=DomainKind.PLATFORM, is_default=True)
    return row.name if row else platform_domain


def hostname(component: Component, domain: str) -> str:
    """The component's public hostname on ``domain``."""
    return f"{component.subdomain}.{domain}"


async def component_of(service: Service, component_name: str | None) -> Component | None:
    if component_name is None:
        return None
    component = await Component.get_or_none(service=service, name=component_name)
    if component is None:
        raise NotFound(f"service has no component {component_name}", field="component")
    return component


async def set_env_vars(
    service: Service, component: Component | None, values: dict[str, str], box: SecretBox
) -> list[EnvVar]:
    """Set ``values`` for the whole service, or for ``component``'s own env when given."""
    values = _validated_env(values)
    # A malformed ``${{`` is refused now, naming its key, not first at the next deploy.
    # Whether a reference names a real component and variable is still the deploy's to say:
    # the component it names may be created after this.
    try:
        references.references(values, component=component.name if component else None)
    except BadUserInput as error:
        raise BadUserInput(error.message, field="value") from None
    return await _set_env(service, component, values, box)


async def delete_env_vars(
    service: Service, component: Component | None, keys: Iterable[str]
) -> int:
    return await EnvVar.filter(
        service=service, scope=component.name if component else "", key__in=list(keys)
    ).delete()


async def _set_env(
    service: Service, component: Component | None, values: dict[str, str], box: SecretBox
) -> list[EnvVar]:
    scope = component.name if component else ""
    result = []
    for key, value in values.items():
        variable, _ = await EnvVar.update_or_create(
            service=service,
            scope=scope,
            key=key,
            defaults={"component": component, "value_encrypted": box.encrypt(value)},
        )
        result.append(variable)
    return result


async def _create_component(
    service: Service, spec: ComponentSpec, box: SecretBox, *, primary: bool
) -> Component:
    subdomain = service.slug if primary else names.component_subdomain(service.slug, spec.name)
    component = await Component.create(
        service=service,
        name=spec.name,
        type=spec.type,
        image=spec.image,
        repo_url=spec.repo_url,
        branch=spec.branch,
        commit=spec.commit,
        dockerfile=spec.dockerfile,
        start_command=spec.start_command,
        internal_port=spec.port,
        healthcheck_path=spec.healthcheck_path,
        subdomain=subdomain,
        is_primary=primary,
    )
    if spec.env:
        await _set_env(service, component, spec.env, box)
    return component


def _check_unique_names(component_names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in component_names:
        if name in seen:
            raise BadUserInput(f"two components are called {name}", field="components")
        seen.add(name)

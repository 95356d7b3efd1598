"""Managed databases: PostgreSQL and Redis components with a volume, generated credentials
(encrypted at rest) and the connection variables the service's other components get.

The images follow the official ``postgres`` and ``redis`` images' interface (POSTGRES_USER,
POSTGRES_PASSWORD, POSTGRES_DB and /var/lib/postgresql/data; redis-server's arguments and
/data), so an operator can point DIGI_POSTGRES_IMAGE / DIGI_REDIS_IMAGE at any image that does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from digi_core.config import Settings
from digi_core.crypto import SecretBox
from digi_core.models import Component, ComponentType

MANAGED = {ComponentType.POSTGRES, ComponentType.REDIS}
POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_USER = "digi"
POSTGRES_DB = "app"


@dataclass
class DatabaseContainer:
    """How to run one managed database: the pipeline turns this into a ContainerSpec."""

    image: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    volumes: dict[str, str] = field(default_factory=dict)


def port(component: Component) -> int | None:
    """Where a managed database answers (its health check); None for other components."""
    return {ComponentType.POSTGRES: POSTGRES_PORT, ComponentType.REDIS: REDIS_PORT}.get(
        component.type
    )


def volume_name(service_slug: str, component: str) -> str:
    return f"digi-{service_slug}-{component}-data"


async def password(component: Component, box: SecretBox) -> str:
    """The component's password: generated on first use, then kept encrypted in its row."""
    stored = component.settings.get("password")
    if isinstance(stored, str):
        return box.decrypt(stored)
    value = secrets.token_urlsafe(24)  # URL-safe: it goes into connection URLs as is
    component.settings = {**component.settings, "password": box.encrypt(value)}
    await component.save(update_fields=["settings", "updated_at"])
    return value


def container(
    component: Component, service_slug: str, secret: str, settings: Settings
) -> DatabaseContainer:
    volume = volume_name(service_slug, component.name)
    if component.type is ComponentType.POSTGRES:
        return DatabaseContainer(
            image=component.image or settings.postgres_image,
            port=POSTGRES_PORT,
            env={
                "POSTGRES_USER": POSTGRES_USER,
                "POSTGRES_PASSWORD": secret,
                "POSTGRES_DB": POSTGRES_DB,
            },
            volumes={volume: "/var/lib/postgresql/data"},
        )
    return DatabaseContainer(
        image=component.image or settings.redis_image,
        port=REDIS_PORT,
        command=["redis-server", "--requirepass", secret, "--appendonly", "yes", "--dir", "/data"],
        volumes={volume: "/data"},
    )


def variables(component: Component, secret: str) -> dict[str, str]:
    """What the other components reach the database with, by its name on the network."""
    host = component.name
    if component.type is ComponentType.POSTGRES:
        url = f"postgresql://{POSTGRES_USER}:{secret}@{host}:{POSTGRES_PORT}/{POSTGRES_DB}"
        return {
            "DATABASE_URL": url,
            "PGHOST": host,
            "PGPORT": str(POSTGRES_PORT),
            "PGUSER": POSTGRES_USER,
            "PGPASSWORD": secret,
            "PGDATABASE": POSTGRES_DB,
        }
    return {"REDIS_URL": f"redis://default:{secret}@{host}:{REDIS_PORT}"}


def injected(databases: Iterable[tuple[Component, dict[str, str]]]) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL for the service's apps, when exactly one database of the
    kind makes them unambiguous (with two, reference the one you mean: ${{name.REDIS_URL}})."""
    by_type: dict[ComponentType, list[dict[str, str]]] = {}
    for component, values in databases:
        by_type.setdefault(component.type, []).append(values)
    env: dict[str, str] = {}
    for found in by_type.values():
        if len(found) == 1:
            env |= {key: value for key, value in found[0].items() if key.endswith("_URL")}
    return env

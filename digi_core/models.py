"""The data model: every table Digi has, as Tortoise ORM models (app label ``digi``).

Model docstrings become table comments: keep semicolons out of them (SQLite splits on them).
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"


class TokenKind(StrEnum):
    API = "api"
    SESSION = "session"


class OneTimePurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class ServiceStatus(StrEnum):
    CREATED = "created"
    DEPLOYING = "deploying"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    SUSPENDED = "suspended"
    DELETING = "deleting"


class ComponentType(StrEnum):
    GITHUB = "github"
    DOCKER = "docker"
    POSTGRES = "postgres"
    REDIS = "redis"
    UPLOAD = "upload"


class DeploymentStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    DEPLOYING = "deploying"
    RUNNING = "running"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    STOPPED = "stopped"

    @property
    def final(self) -> bool:
        return self in {self.RUNNING, self.FAILED, self.CANCELLED, self.SUPERSEDED, self.STOPPED}

    @property
    def active(self) -> bool:
        """A worker has it, or will: queued, building or deploying."""
        return self in {self.QUEUED, self.BUILDING, self.DEPLOYING}


class HostStatus(StrEnum):
    PROVISIONING = "provisioning"
    READY = "ready"
    UNREACHABLE = "unreachable"
    DESTROYING = "destroying"
    FAILED = "failed"


class DomainKind(StrEnum):
    PLATFORM = "platform"
    CUSTOM = "custom"


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    name = fields.CharField(max_length=100, default="")
    password_hash = fields.CharField(max_length=255, null=True)
    password_changed_at = fields.DatetimeField(null=True)
    role = fields.CharEnumField(Role, max_length=16, default=Role.USER)
    plan = fields.CharEnumField(Plan, max_length=16, default=Plan.FREE)
    extra_storage_blocks = fields.IntField(default=0)
    email_verified_at = fields.DatetimeField(null=True)
    suspended_at = fields.DatetimeField(null=True)
    # Deleted accounts keep an anonymised row: the audit log and old slugs point at it.
    deleted_at = fields.DatetimeField(null=True)
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    stripe_customer_id = fields.CharField(max_length=64, null=True, unique=True)
    stripe_subscription_id = fields.CharField(max_length=64, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"


class ApiToken(Model):
    """An API token or a browser session. Only a keyed hash of the secret is stored."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="tokens", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(TokenKind, max_length=16, default=TokenKind.API)
    name = fields.CharField(max_length=100)
    token_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"
        indexes = [Index(fields=("user_id", "kind"), name="api_tokens_user_kind_idx")]


class OneTimeToken(Model):
    """A single-use, expiring token sent by email (verification, password reset)."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="one_time_tokens", on_delete=fields.CASCADE
    )
    purpose = fields.CharEnumField(OneTimePurpose, max_length=32)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "one_time_tokens"


class ComputeNode(Model):
    """A machine an operator added (a Proxmox node, a bring-your-own server)."""

    id = fields.IntField(primary_key=True)
    provider = fields.CharField(max_length=64)
    name = fields.CharField(max_length=100, unique=True)
    api_url = fields.CharField(max_length=255, null=True)
    credentials_encrypted = fields.TextField(null=True)
    settings: dict[str, object] = fields.JSONField(default=dict)
    max_vms = fields.IntField(null=True)
    max_memory_mb = fields.IntField(null=True)
    enabled = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "compute_nodes"


class Host(Model):
    """A machine that runs containers: the local engine, a VM, or a server reached by SSH."""

    id = fields.IntField(primary_key=True)
    provider = fields.CharField(max_length=64)
    external_id = fields.CharField(max_length=128)
    node: fields.ForeignKeyNullableRelation[ComputeNode] = fields.ForeignKeyField(
        "digi.ComputeNode", related_name="hosts", null=True, on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=100)
    address = fields.CharField(max_length=255, null=True)
    ssh_host_key = fields.TextField(null=True)
    storage_gb = fields.IntField(default=0)
    status = fields.CharEnumField(HostStatus, max_length=16, default=HostStatus.PROVISIONING)
    state: dict[str, object] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hosts"
        unique_together = (("provider", "external_id"),)


class Service(Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="services", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=63)
    # Never reused: a deleted service keeps its row (deleted_at) and so its slug.
    slug = fields.CharField(max_length=63, unique=True)
    status = fields.CharEnumField(ServiceStatus, max_length=16, default=ServiceStatus.CREATED)
    host: fields.ForeignKeyNullableRelation[Host] = fields.ForeignKeyField(
        "digi.Host", related_name="services", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)

    components: fields.ReverseRelation[Component]
    deployments: fields.ReverseRelation[Deployment]

    class Meta:
        table = "services"
        indexes = [Index(fields=("owner_id", "deleted_at"), name="services_owner_idx")]


class Component(Model):
    """One container of a service: an app from Git, an image, or a managed database."""

    id = fields.IntField(primary_key=True)
    service: fields.ForeignKeyRelation[Service] = fields.ForeignKeyField(
        "digi.Service", related_name="components", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=32)
    type = fields.CharEnumField(ComponentType, max_length=16)
    image = fields.CharField(max_length=255, null=True)
    repo_url = fields.CharField(max_length=512, null=True)
    branch = fields.CharField(max_length=255, null=True)
    commit = fields.CharField(max_length=64, null=True)
    dockerfile = fields.CharField(max_length=255, null=True)
    start_command = fields.TextField(null=True)
    internal_port = fields.IntField(null=True)
    healthcheck_path = fields.CharField(max_length=255, null=True)
    subdomain = fields.CharField(max_length=63, unique=True)
    is_primary = fields.BooleanField(default=False)
    settings: dict[str, object] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "components"
        unique_together = (("service", "name"),)


class Deployment(Model):
    """One component's deployment. The rows of one deploy share a ``job_id``."""

    id = fields.IntField(primary_key=True)
    service: fields.ForeignKeyRelation[Service] = fields.ForeignKeyField(
        "digi.Service", related_name="deployments", on_delete=fields.CASCADE
    )
    component: fields.ForeignKeyRelation[Component] = fields.ForeignKeyField(
        "digi.Component", related_name="deployments", on_delete=fields.CASCADE
    )
    job_id = fields.CharField(max_length=64, db_index=True)
    status = fields.CharEnumField(DeploymentStatus, max_length=16, default=DeploymentStatus.QUEUED)
    message = fields.TextField(default="")
    error = fields.TextField(null=True)
    image = fields.CharField(max_length=255, null=True)
    commit_sha = fields.CharField(max_length=64, null=True)
    container_id = fields.CharField(max_length=128, null=True)
    source_path = fields.CharField(max_length=512, null=True)
    rollback_of: fields.ForeignKeyNullableRelation[Deployment] = fields.ForeignKeyField(
        "digi.Deployment", related_name="rollbacks", null=True, on_delete=fields.SET_NULL
    )
    triggered_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="deployments", null=True, on_delete=fields.SET_NULL
    )
    attempts = fields.IntField(default=0)
    claimed_by = fields.CharField(max_length=128, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "deployments"
        indexes = [
            Index(fields=("service_id", "created_at"), name="deployments_service_idx"),
            Index(fields=("status",), name="deployments_status_idx"),
        ]


class DeploymentLogLine(Model):
    """One line of a deployment's log: its steps and its build's output, in order (by id),
    written before it is published, so what a viewer missed live can be read back."""

    id = fields.BigIntField(primary_key=True)
    deployment: fields.ForeignKeyRelation[Deployment] = fields.ForeignKeyField(
        "digi.Deployment", related_name="log_lines", on_delete=fields.CASCADE
    )
    at = fields.DatetimeField()
    # The deployment's status when the line was written, as its live event said.
    status = fields.CharEnumField(DeploymentStatus, max_length=16)
    line = fields.TextField()

    class Meta:
        table = "deployment_log_lines"
        indexes = [Index(fields=("deployment_id", "id"), name="deployment_log_lines_idx")]


class EnvVar(Model):
    """A variable for a whole service (``scope`` = "") or one component (its name)."""

    id = fields.IntField(primary_key=True)
    service: fields.ForeignKeyRelation[Service] = fields.ForeignKeyField(
        "digi.Service", related_name="env_vars", on_delete=fields.CASCADE
    )
    component: fields.ForeignKeyNullableRelation[Component] = fields.ForeignKeyField(
        "digi.Component", related_name="env_vars", null=True, on_delete=fields.CASCADE
    )
    # A NULL component would not take part in a unique constraint, so the scope is spelled out.
    scope = fields.CharField(max_length=32, default="")
    key = fields.CharField(max_length=128)
    value_encrypted = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "env_vars"
        unique_together = (("service", "scope", "key"),)


class Domain(Model):
    """A platform domain (operator's, at most one the default, enforced by a partial unique
    index in migration 0002) or a user's custom domain on a component."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=253, unique=True)
    kind = fields.CharEnumField(DomainKind, max_length=16)
    is_default = fields.BooleanField(default=False)
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="domains", null=True, on_delete=fields.CASCADE
    )
    component: fields.ForeignKeyNullableRelation[Component] = fields.ForeignKeyField(
        "digi.Component", related_name="domains", null=True, on_delete=fields.CASCADE
    )
    verification_token = fields.CharField(max_length=64, null=True)
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "domains"


class Coupon(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    percent_off = fields.IntField(null=True)
    amount_off_pence = fields.IntField(null=True)
    duration = fields.CharField(max_length=16, default="once")
    duration_in_months = fields.IntField(null=True)
    max_redemptions = fields.IntField(null=True)
    times_redeemed = fields.IntField(default=0)
    expires_at = fields.DatetimeField(null=True)
    active = fields.BooleanField(default=True)
    external_id = fields.CharField(max_length=128, null=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="coupons_created", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupons"


class CouponRedemption(Model):
    id = fields.IntField(primary_key=True)
    coupon: fields.ForeignKeyRelation[Coupon] = fields.ForeignKeyField(
        "digi.Coupon", related_name="redemptions", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="coupon_redemptions", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupon_redemptions"
        unique_together = (("coupon", "user"),)


class AuditLog(Model):
    """Who did what to what, from where, and how it ended. Kept when its actor is deleted."""

    id = fields.IntField(primary_key=True)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "digi.User", related_name="audit_logs", null=True, on_delete=fields.SET_NULL
    )
    actor_email = fields.CharField(max_length=254, null=True)
    action = fields.CharField(max_length=64)
    target_type = fields.CharField(max_length=32, null=True)
    target_id = fields.CharField(max_length=64, null=True)
    metadata: dict[str, object] = fields.JSONField(default=dict)
    ip = fields.CharField(max_length=45, null=True)
    outcome = fields.CharEnumField(AuditOutcome, max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_logs"
        indexes = [
            Index(fields=("action", "created_at"), name="audit_logs_action_idx"),
            Index(fields=("target_type", "target_id"), name="audit_logs_target_idx"),
        ]


class ProcessedEvent(Model):
    """A webhook event already applied: deliveries are at-least-once."""

    id = fields.IntField(primary_key=True)
    provider = fields.CharField(max_length=32)
    event_id = fields.CharField(max_length=128)
    processed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "processed_events"
        unique_together = (("provider", "event_id"),)


class InternalRecord(Model):
    """A name in Digi's internal DNS zone, resolved by Caddy's dynamic upstreams."""

    # <hostname>.u.digi.internal: its container on its host; <hostname>.r.…: the host.

    name = fields.CharField(max_length=253, primary_key=True)
    addresses = fields.CharField(max_length=512, default="")
    host_id = fields.CharField(max_length=128, db_index=True)
    updated_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "internal_records"

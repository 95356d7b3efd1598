"""Digi's settings: read once from the environment and an optional ``.env`` (pydantic-settings)."""

from __future__ import annotations

import hashlib
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from digi_core.errors import ConfigError

MIN_SECRET_LENGTH = 32
SECRET_FILE_NAME = "secret"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    HUMAN = "human"
    JSON = "json"


class TlsMode(StrEnum):
    OFF = "off"
    INTERNAL = "internal"
    ACME = "acme"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("digi"))


class Settings(BaseSettings):
    """Every setting Digi reads. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
        # An empty line copied from .env.example means "not set", not "set to nothing".
        env_ignore_empty=True,
    )

    # Where and how Digi runs
    environment: Environment = Field(Environment.DEVELOPMENT, alias="DIGI_ENV")
    data_dir: Path = Field(default_factory=_default_data_dir, alias="DIGI_DATA_DIR")
    database_url: str = Field("", alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # Keeps two Digi installations (or test runs) on one Redis apart.
    redis_prefix: str = Field(
        "digi:", alias="DIGI_REDIS_PREFIX", pattern=r"^[A-Za-z0-9_.:-]{1,64}$"
    )
    secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DIGI_SECRET", "BETTER_AUTH_SECRET")
    )
    host: str = Field("127.0.0.1", alias="DIGI_HOST")
    port: int = Field(4000, alias="DIGI_PORT", ge=1, le=65535)
    log_format: LogFormat = Field(LogFormat.HUMAN, alias="DIGI_LOG_FORMAT")
    log_level: str = Field("INFO", alias="DIGI_LOG_LEVEL")
    load_plugins: str | None = Field(None, alias="DIGI_LOAD_PLUGINS")

    public_url: str | None = Field(None, alias="DIGI_PUBLIC_URL")

    # Email (verification, password reset); without SMTP_HOST mails are written to the log
    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT", ge=1, le=65535)
    smtp_username: str | None = Field(None, alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, alias="SMTP_PASSWORD")
    smtp_from: str = Field("Digi <digi@localhost>", alias="SMTP_FROM")
    smtp_security: SmtpSecurity = Field(SmtpSecurity.STARTTLS, alias="SMTP_SECURITY")

    # Which providers the core uses, by the name their plugin registered
    compute: str = Field("local", alias="DIGI_COMPUTE")
    router: str = Field("caddy", alias="DIGI_ROUTER")
    dns: str | None = Field(None, alias="DIGI_DNS")

    # Domains and routing
    platform_domain: str = Field("localhost", alias="PLATFORM_DOMAIN")
    master_caddy_url: str | None = Field(None, alias="MASTER_CADDY_URL")
    # The Caddy that Digi runs on this machine (the embedded default's only one).
    caddy_admin_url: str = Field("http://127.0.0.1:2019", alias="DIGI_CADDY_ADMIN_URL")
    http_port: int = Field(8080, alias="DIGI_HTTP_PORT", ge=1, le=65535)
    # Whether `digi server` starts and supervises that Caddy itself (off: one runs already).
    caddy_manage: bool = Field(True, alias="DIGI_CADDY_MANAGE")
    caddy_bin: str = Field("caddy", alias="DIGI_CADDY_BIN")
    # HTTPS at the public entry (the master Caddy, else the one Digi runs): off, Caddy's
    # internal CA (local and test setups) or ACME (production; needs wildcard DNS, README).
    tls: TlsMode = Field(TlsMode.OFF, alias="DIGI_TLS")
    https_port: int = Field(8443, alias="DIGI_HTTPS_PORT", ge=1, le=65535)
    acme_email: str | None = Field(None, alias="DIGI_ACME_EMAIL")
    acme_ca: str | None = Field(None, alias="DIGI_ACME_CA")
    # The master Caddy's public ports, when MASTER_CADDY_URL names one.
    master_http_port: int = Field(80, alias="DIGI_MASTER_HTTP_PORT", ge=1, le=65535)
    master_https_port: int = Field(443, alias="DIGI_MASTER_HTTPS_PORT", ge=1, le=65535)
    # Digi's own DNS zone for Caddy's dynamic upstreams (ip:port it answers on, UDP), and
    # how long Caddy keeps an answer: a moved route takes effect within that time.
    internal_dns: str = Field("127.0.0.1:5354", alias="DIGI_INTERNAL_DNS")
    # Where hosts' Caddies reach that zone (ip:port): Digi's address on the hosts' network
    # when they are VMs or other servers (listen on it, or 0.0.0.0). Default: DIGI_INTERNAL_DNS.
    internal_dns_public: str | None = Field(None, alias="DIGI_INTERNAL_DNS_PUBLIC")
    route_refresh: float = Field(0.25, alias="DIGI_ROUTE_REFRESH", gt=0, le=300)
    # Nameservers asked for custom domains' TXT verification records (ip or ip:port, comma
    # separated); the system's resolver when unset.
    verify_nameservers: str | None = Field(None, alias="DIGI_VERIFY_NAMESERVERS")

    # Deploys: the worker, health checks, timeouts (seconds) and the plans' container limits
    run_worker: bool = Field(True, alias="DIGI_RUN_WORKER")
    worker_concurrency: int = Field(4, alias="DIGI_WORKER_CONCURRENCY", ge=1, le=64)
    healthcheck_timeout: float = Field(60, alias="DIGI_HEALTHCHECK_TIMEOUT", gt=0, le=3600)
    stop_timeout: int = Field(5, alias="DIGI_STOP_TIMEOUT", ge=0, le=300)
    drain_seconds: float = Field(1, alias="DIGI_DRAIN_SECONDS", ge=0, le=300)
    deploy_timeout: float = Field(1800, alias="DIGI_DEPLOY_TIMEOUT", gt=0)
    worker_heartbeat: float = Field(5, alias="DIGI_WORKER_HEARTBEAT", gt=0)
    worker_stale_after: float = Field(30, alias="DIGI_WORKER_STALE_AFTER", gt=0)
    reconcile_interval: float = Field(30, alias="DIGI_RECONCILE_INTERVAL", gt=0)
    # Deployment logs (steps and build output) kept in the database
    deploy_log_lines: int = Field(10_000, alias="DIGI_DEPLOY_LOG_LINES", ge=100)
    deploy_logs_kept: int = Field(20, alias="DIGI_DEPLOY_LOGS_KEPT", ge=1)
    # Managed databases' images (the official images' interface; see deploys/databases.py)
    postgres_image: str = Field("postgres:16", alias="DIGI_POSTGRES_IMAGE")
    redis_image: str = Field("redis:7", alias="DIGI_REDIS_IMAGE")
    build_concurrency: int = Field(2, alias="DIGI_BUILD_CONCURRENCY", ge=1, le=64)
    build_memory_mb: int = Field(2048, alias="DIGI_BUILD_MEMORY_MB", ge=64)
    free_memory_mb: int = Field(512, alias="DIGI_FREE_MEMORY_MB", ge=0)
    free_cpus: float = Field(0.5, alias="DIGI_FREE_CPUS", ge=0)
    pro_memory_mb: int = Field(4096, alias="DIGI_PRO_MEMORY_MB", ge=0)
    pro_cpus: float = Field(2, alias="DIGI_PRO_CPUS", ge=0)

    # Proxmox VE: the first compute node, added at start-up when set
    proxmox_url: str | None = Field(None, alias="PROXMOX_URL")
    proxmox_token_id: str | None = Field(None, alias="PROXMOX_TOKEN_ID")
    proxmox_token_secret: SecretStr | None = Field(None, alias="PROXMOX_TOKEN_SECRET")
    proxmox_node: str | None = Field(None, alias="PROXMOX_NODE")
    proxmox_template_id: int | None = Field(None, alias="PROXMOX_TEMPLATE_ID")
    proxmox_storage: str = Field("local-lvm", alias="PROXMOX_STORAGE")
    proxmox_bridge: str = Field("vmbr0", alias="PROXMOX_BRIDGE")
    # "true", "false", or the path of a CA file that signed the nodes' certificates.
    proxmox_verify_ssl: str = Field("true", alias="PROXMOX_VERIFY_SSL")
    proxmox_task_timeout: float = Field(600, alias="DIGI_PROXMOX_TASK_TIMEOUT", gt=0)
    # From start to the QEMU guest agent reporting an address and sshd answering.
    proxmox_boot_timeout: float = Field(300, alias="DIGI_PROXMOX_BOOT_TIMEOUT", gt=0)

    # Hosts reached over SSH (Proxmox VMs, bring-your-own servers): the platform's key
    # (generated in the data directory when unset), the VM's user and sizes, and where the
    # template's Docker socket and Caddy admin API are on the host.
    ssh_key_file: Path | None = Field(None, alias="DIGI_SSH_KEY")
    vm_user: str = Field("digi", alias="DIGI_VM_USER", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    vm_ssh_port: int = Field(22, alias="DIGI_VM_SSH_PORT", ge=1, le=65535)
    vm_memory_mb: int = Field(2048, alias="DIGI_VM_MEMORY_MB", ge=256)
    vm_cores: int = Field(2, alias="DIGI_VM_CORES", ge=1, le=128)
    host_docker_socket: str = Field("/var/run/docker.sock", alias="DIGI_HOST_DOCKER_SOCKET")
    host_caddy_admin: str = Field(
        "127.0.0.1:2019", alias="DIGI_HOST_CADDY_ADMIN", pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$"
    )
    # Bring-your-own servers for DIGI_COMPUTE=ssh: name=user@address[:port], comma separated.
    ssh_servers: str | None = Field(None, alias="DIGI_SSH_SERVERS")
    # Disk per VM by plan, and the size of one extra storage block (GB).
    free_storage_gb: int = Field(16, alias="DIGI_FREE_STORAGE_GB", ge=1)
    pro_storage_gb: int = Field(64, alias="DIGI_PRO_STORAGE_GB", ge=1)
    storage_block_gb: int = Field(32, alias="DIGI_STORAGE_BLOCK_GB", ge=1)

    # Cloudflare DNS
    cloudflare_api_token: SecretStr | None = Field(None, alias="CLOUDFLARE_API_TOKEN")
    cloudflare_zone_id: str | None = Field(None, alias="CLOUDFLARE_ZONE_ID")
    cloudflare_base_url: str | None = Field(None, alias="CLOUDFLARE_BASE_URL")

    # Stripe billing: off unless STRIPE_SECRET_KEY is set
    stripe_secret_key: SecretStr | None = Field(None, alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_pro_price_id: str | None = Field(None, alias="STRIPE_PRO_PRICE_ID")
    stripe_storage_price_id: str | None = Field(None, alias="STRIPE_STORAGE_PRICE_ID")
    stripe_api_base: str | None = Field(None, alias="STRIPE_API_BASE")

    # GitHub: OAuth app for sign-in, token for private repositories
    github_client_id: str | None = Field(None, alias="GITHUB_CLIENT_ID")
    github_client_secret: SecretStr | None = Field(None, alias="GITHUB_CLIENT_SECRET")
    github_token: SecretStr | None = Field(None, alias="GITHUB_TOKEN")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"sqlite", "postgres", "postgresql"}:
            raise ValueError("must start with sqlite:// or postgres:// (postgresql:// works too)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("platform_domain")
    @classmethod
    def _plain_domain(cls, value: str) -> str:
        from digi_core.names import validate_domain

        return validate_domain(value)

    @property
    def embedded(self) -> bool:
        """True on the embedded default: a SQLite database on this machine."""
        return self.database_url.startswith("sqlite:")

    @property
    def production(self) -> bool:
        return self.environment == Environment.PRODUCTION

    @property
    def base_url(self) -> str:
        """Where users reach the API, for links in emails (DIGI_PUBLIC_URL or host:port)."""
        host = "localhost" if self.host in {"127.0.0.1", "0.0.0.0", "::"} else self.host
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/")

    @property
    def internal_api_url(self) -> str:
        """Where this machine's Caddy reaches the API (loopback when it listens everywhere)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def billing_enabled(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def secret_value(self) -> str:
        """The platform secret; :func:`load_settings` guarantees it is set."""
        assert self.secret is not None, "load_settings() resolves the secret"
        return self.secret.get_secret_value()

    def app_url(self, hostname: str) -> str:
        """Where users open an app: the public entry's HTTPS port when TLS is on, else its
        HTTP port (the master Caddy's when there is one, else the Caddy that Digi runs)."""
        master = self.master_caddy_url is not None
        if self.tls is not TlsMode.OFF:
            port, scheme, default = (
                self.master_https_port if master else self.https_port,
                "https",
                443,
            )
        else:
            port, scheme, default = (
                self.master_http_port if master else self.http_port,
                "http",
                80,
            )
        return f"{scheme}://{hostname}" + ("" if port == default else f":{port}")

    @property
    def installation_id(self) -> str:
        """Names this installation on shared hosts (container labels); derived from the
        secret, so stable across restarts and different between installations."""
        digest = hashlib.sha256(b"digi-installation:" + self.secret_value.encode())
        return digest.hexdigest()[:16]

    @property
    def plugins_to_load(self) -> list[str] | None:
        return _plugin_list(self.load_plugins)


class PluginSelection(BaseSettings):
    """Only ``DIGI_LOAD_PLUGINS``: the CLI needs it before the other settings are checked."""

    model_config = Settings.model_config
    load_plugins: str | None = Field(None, alias="DIGI_LOAD_PLUGINS")

    @property
    def plugins_to_load(self) -> list[str] | None:
        return _plugin_list(self.load_plugins)


def _plugin_list(value: str | None) -> list[str] | None:
    """``None`` means every installed plugin; otherwise the names listed, comma-separated."""
    if not value:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def load_settings(**overrides: Any) -> Settings:
    """Read and check the settings; raise :class:`ConfigError` with one line per problem.

    Fills the embedded defaults: a SQLite file in the data directory, and a platform secret
    generated once and kept in that directory (mode 0600).
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise ConfigError([_describe(problem) for problem in error.errors()]) from None

    problems: list[str] = []
    if not settings.database_url:
        settings.database_url = f"sqlite://{settings.data_dir / 'digi.sqlite3'}"
    if settings.embedded or settings.secret is None:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problems.append(f"DIGI_DATA_DIR: cannot create {settings.data_dir}: {error.strerror}")
    if settings.secret is None:
        if settings.embedded and not problems:
            settings.secret = SecretStr(_stored_secret(settings.data_dir))
        elif not settings.embedded:
            problems.append(
                "DIGI_SECRET: required with a PostgreSQL DATABASE_URL; set it to a random "
                f"string of at least {MIN_SECRET_LENGTH} characters (openssl rand -hex 32)"
            )
    elif len(settings.secret.get_secret_value()) < MIN_SECRET_LENGTH:
        problems.append(
            f"DIGI_SECRET: must be at least {MIN_SECRET_LENGTH} characters long "
            "(openssl rand -hex 32 makes one)"
        )
    if not settings.run_worker and settings.redis_url is None:
        problems.append(
            "DIGI_RUN_WORKER: false needs REDIS_URL, where `digi worker` processes take the "
            "deploy jobs; without Redis the server must run them itself"
        )
    if problems:
        raise ConfigError(problems)
    return settings


def _stored_secret(data_dir: Path) -> str:
    """The embedded default's secret: generated on first use, then read back."""
    path = data_dir / SECRET_FILE_NAME
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not write two different secrets.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    return value


def _describe(problem: Any) -> str:
    location = problem.get("loc") or ("settings",)
    name = str(location[0])
    message = str(problem.get("msg", "is invalid")).removeprefix("Value error, ")
    given = problem.get("input")
    shown = "" if given is None or "SECRET" in name or "TOKEN" in name else f" (got {given!r})"
    return f"{name}: {message}{shown}"

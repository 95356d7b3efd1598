"""Validation of everything users and operators type: names, domains, images, Git, env, accounts."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
import unicodedata
from collections.abc import Collection, Sequence
from pathlib import Path

from digi_core.errors import BadUserInput, NotFound

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DOMAIN_LENGTH = 253

# Services and components: a letter first, then letters, digits and single inner hyphens.
# 24 + 1 + 12 (slug) + 1 + 18 + 1 + 4 (component subdomain) = 61, inside a 63-character label.
SERVICE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MAX_SERVICE_NAME_LENGTH = 24
MAX_COMPONENT_NAME_LENGTH = 18
SLUG_ALPHABET = string.ascii_lowercase + string.digits
SLUG_RANDOM_LENGTH = 12
RESERVED_NAMES = frozenset(
    {
        "api", "app", "admin", "www", "mail", "smtp", "imap", "pop", "ftp", "ns1", "ns2",
        "root", "digi", "dashboard", "console", "status", "static", "assets", "cdn",
        "internal", "localhost", "auth", "graphql", "healthz", "metrics", "git", "registry",
        "caddy", "docs", "help", "support", "billing",
    }
)  # fmt: skip

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RESERVED_ENV_PREFIX = "DIGI_"
MAX_ENV_VALUE_BYTES = 32 * 1024

# distribution/reference, written with explicit ASCII classes (``\w`` would admit Unicode).
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_REGISTRY = (
    rf"(?:{_IMAGE_DOMAIN_COMPONENT}(?:\.{_IMAGE_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
    r"(?::[0-9]+)?"
)
IMAGE_REFERENCE = re.compile(
    rf"(?:{_IMAGE_REGISTRY}/)?{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?"
)
MAX_IMAGE_REFERENCE_LENGTH = 255

# Git URLs. Paths are limited to URL-safe characters: no shell metacharacters, no quotes.
_GIT_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
)
_GIT_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_GIT_PORT = r"(?::[0-9]{1,5})?"
_GIT_PATH = r"/[A-Za-z0-9._~%+=@:/-]+"
GIT_URL_FORMS = (
    re.compile(rf"https?://{_GIT_HOST}{_GIT_PORT}{_GIT_PATH}"),
    re.compile(rf"ssh://(?:{_GIT_USER}@)?{_GIT_HOST}{_GIT_PORT}{_GIT_PATH}"),
    re.compile(rf"git://{_GIT_HOST}{_GIT_PORT}{_GIT_PATH}"),
    re.compile(rf"{_GIT_USER}@{_GIT_HOST}:[A-Za-z0-9._~%+=@/][A-Za-z0-9._~%+=@:/-]*"),
)
GIT_FILE_URL = re.compile(r"file://(/[A-Za-z0-9._~+=@:/-]*)")
# git hands ``<transport>::<address>`` to a remote helper (``ext::`` runs a command).
GIT_TRANSPORT_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
GIT_HTTP_CREDENTIALS = re.compile(r"https?://[^/@]*@", re.IGNORECASE)
MAX_GIT_URL_LENGTH = 512
GIT_URL_RULES = (
    "use https://host/path, http://host/path, ssh://[user@]host[:port]/path, "
    "git://host/path or user@host:path"
)

MAX_BRANCH_LENGTH = 255
# git refuses ~ ^ : ? * [ \ in ref names; the rest would mean something to a shell.
BRANCH_FORBIDDEN_CHARACTERS = frozenset("~^:?*[\\$`;|&<>'\"()")
BRANCH_RULES = (
    "branch names are 1-255 printable ASCII characters without spaces or "
    "~ ^ : ? * [ \\ $ ` ; | & < > ' \" ( ), "
    "and must not start with - or /, end with / or ., contain .., //, @{, "
    "a part starting with . or ending with .lock, or be @ or HEAD"
)

COMMIT = re.compile(r"[0-9a-fA-F]{7,40}|[0-9a-fA-F]{64}")
HEALTHCHECK_PATH = re.compile(r"/[!-\"$-~]{0,254}")  # printable ASCII except space and #

EMAIL_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~]{1,64}")
MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
PASSWORD_RULES = (
    f"Passwords need {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, "
    "must not be one character repeated, and must not be your email address "
    "or the part of it before the @."
)


def _shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message: control characters escaped, long values cut short."""
    if len(value) <= limit:
        return repr(value)
    shown = repr(value[:limit])
    return f"{shown[:-1]}…{shown[-1]}"


def _has_space_or_control(value: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value)


def validate_label(value: str, *, what: str = "name") -> str:
    """One DNS label (RFC 1123): lowercase letters, digits and inner hyphens, 1-63 long."""
    if not LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-63 lowercase letters, digits or hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def validate_domain(value: str) -> str:
    """A domain name such as ``example.com`` or ``localhost``; returned lowercased."""
    domain = value.strip().lower().removesuffix(".")
    if not domain or len(domain) > MAX_DOMAIN_LENGTH:
        raise ValueError(f"domain {value!r} must be 1-{MAX_DOMAIN_LENGTH} characters long")
    for label in domain.split("."):
        validate_label(label, what=f"domain {value!r}: part")
    return domain


def _validate_dns_name(value: str, *, max_length: int, what: str, field: str) -> str:
    if len(value) <= max_length and SERVICE_NAME.fullmatch(value):
        return value
    raise BadUserInput(
        f"{what} {_shown(value)} is not allowed: use 1-{max_length} lowercase letters, digits "
        "and single hyphens, starting with a letter and not ending with a hyphen.",
        field=field,
    )


def validate_service_name(value: str, *, field: str = "name") -> str:
    """A service name: 1-24 lowercase letters, digits and single inner hyphens, not reserved."""
    _validate_dns_name(value, max_length=MAX_SERVICE_NAME_LENGTH, what="Service name", field=field)
    if value in RESERVED_NAMES:
        raise BadUserInput(
            f"Service name {value!r} is reserved by the platform; choose another name.",
            field=field,
        )
    return value


def validate_component_name(value: str, *, field: str = "name") -> str:
    """A component name: 1-18 lowercase letters, digits and single inner hyphens."""
    return _validate_dns_name(
        value, max_length=MAX_COMPONENT_NAME_LENGTH, what="Component name", field=field
    )


def new_slug(name: str) -> str:
    """A service's public label: ``<name>-<12 random lowercase letters and digits>``."""
    suffix = "".join(secrets.choice(SLUG_ALPHABET) for _ in range(SLUG_RANDOM_LENGTH))
    return f"{name}-{suffix}"


def component_subdomain(slug: str, component_name: str) -> str:
    """A component's own label: ``<slug>-<component>-<4 random hex>``, a valid DNS label."""
    return validate_label(f"{slug}-{component_name}-{secrets.token_hex(2)}", what="subdomain")


def validate_env_key(value: str, *, field: str = "key") -> str:
    """An environment variable name: ``[A-Za-z_][A-Za-z0-9_]*``, 1-128 long, not ``DIGI_…``."""
    if not ENV_KEY.fullmatch(value):
        raise BadUserInput(
            f"Variable name {_shown(value)} is not allowed: use 1-128 letters, digits and "
            "underscores, not starting with a digit.",
            field=field,
        )
    if value.upper().startswith(RESERVED_ENV_PREFIX):
        raise BadUserInput(
            f"Variable name {value!r} is not allowed: names starting with {RESERVED_ENV_PREFIX} "
            "are reserved for what the platform sets.",
            field=field,
        )
    return value


def validate_env_value(value: str, *, field: str = "value") -> str:
    """An environment variable value: UTF-8 text of at most 32 KiB, without NUL characters."""
    # Values are often secrets: the messages never repeat them.
    if "\x00" in value:
        raise BadUserInput("Variable values must not contain NUL characters.", field=field)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadUserInput("Variable values must be valid UTF-8 text.", field=field) from None
    if size > MAX_ENV_VALUE_BYTES:
        raise BadUserInput(
            f"Variable values are limited to {MAX_ENV_VALUE_BYTES // 1024} KiB "
            f"({MAX_ENV_VALUE_BYTES} bytes in UTF-8); this one has {size} bytes.",
            field=field,
        )
    return value


def validate_image_reference(value: str, *, field: str = "image") -> str:
    """A Docker image reference such as ``nginx:1.25`` or ``ghcr.io/owner/app@sha256:…``."""
    if len(value) <= MAX_IMAGE_REFERENCE_LENGTH and IMAGE_REFERENCE.fullmatch(value):
        return value
    raise BadUserInput(
        f"Image {_shown(value)} is not a valid image reference: use [registry[:port]/]name"
        "[:tag][@sha256:digest], with a lowercase name such as nginx:1.25-alpine or "
        f"ghcr.io/owner/app:v1, at most {MAX_IMAGE_REFERENCE_LENGTH} characters.",
        field=field,
    )


def validate_git_url(
    value: str, *, allowed_file_roots: Sequence[Path] = (), field: str = "repoUrl"
) -> str:
    """A Git remote over https, http, ssh, git or scp-like ssh; file:// only inside the roots."""

    def refuse(reason: str) -> BadUserInput:
        return BadUserInput(f"Repository URL {reason}; {GIT_URL_RULES}.", field=field)

    if not value:
        raise refuse("is empty")
    if len(value) > MAX_GIT_URL_LENGTH:
        raise refuse(f"is longer than {MAX_GIT_URL_LENGTH} characters")
    if _has_space_or_control(value):
        raise refuse(f"{_shown(value)} contains spaces or control characters")
    if not value.isascii():
        raise refuse(
            f"{_shown(value)} contains non-ASCII characters (write host names in punycode "
            "and paths percent-encoded)"
        )
    if value.startswith("-"):
        raise refuse(f"{_shown(value)} must not start with -")
    if GIT_TRANSPORT_PREFIX.match(value):
        raise refuse(f"{_shown(value)} uses a <transport>:: form such as ext::, which is refused")
    if GIT_HTTP_CREDENTIALS.match(value):
        # Never repeat the URL here: it holds a password or a token.
        raise BadUserInput(
            "Repository URL must not contain a user name, password or token; remove it and "
            "set a GitHub token in your account settings instead.",
            field=field,
        )
    if value.startswith("file:"):
        return _validate_git_file_url(value, allowed_file_roots, field=field)
    if any(form.fullmatch(value) for form in GIT_URL_FORMS):
        return value
    raise refuse(f"{_shown(value)} is not in a recognised form")


def _validate_git_file_url(value: str, allowed_file_roots: Sequence[Path], *, field: str) -> str:
    """A ``file:///abs/path`` URL whose resolved path lies inside one of the allowed roots."""
    limited = "file:// URLs are limited to the repository folders the operator allows"
    match = GIT_FILE_URL.fullmatch(value)
    if not match:
        raise BadUserInput(
            f"Repository URL {_shown(value)} is refused: {limited}, written "
            "file:///absolute/path without percent-escapes, ?, # or a host.",
            field=field,
        )
    resolved = Path(match.group(1)).resolve()
    for root in allowed_file_roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return f"file://{resolved}"
    raise BadUserInput(f"Repository URL {_shown(value)} is refused: {limited}.", field=field)


def validate_branch(value: str, *, field: str = "branch") -> str:
    """A branch name as ``git check-ref-format --branch`` accepts it, in printable ASCII."""

    def refuse(reason: str) -> BadUserInput:
        return BadUserInput(
            f"Branch {_shown(value)} is not allowed ({reason}): {BRANCH_RULES}.", field=field
        )

    if not value or len(value) > MAX_BRANCH_LENGTH:
        raise refuse(f"it must be 1-{MAX_BRANCH_LENGTH} characters")
    if not all("!" <= ch <= "~" for ch in value):
        raise refuse("it contains a space, a control character or non-ASCII text")
    if forbidden := sorted(BRANCH_FORBIDDEN_CHARACTERS.intersection(value)):
        raise refuse(f"it contains {' '.join(forbidden)}")
    if value[0] in "-/":
        raise refuse(f"it starts with {value[0]}")
    if value[-1] in "/.":
        raise refuse(f"it ends with {value[-1]}")
    for sequence in ("..", "//", "@{"):
        if sequence in value:
            raise refuse(f"it contains {sequence}")
    if value in {"@", "HEAD"}:
        raise refuse(f"{value} has a special meaning in git")
    for part in value.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise refuse(f"the part {part!r} starts with . or ends with .lock")
    return value


def validate_commit(value: str, *, field: str = "commit") -> str:
    """A commit id: 7-40 hex digits, or 64 for SHA-256 repositories; returned lowercased."""
    if not COMMIT.fullmatch(value):
        raise BadUserInput(
            f"Commit {_shown(value)} is not allowed: use 7 to 40 hexadecimal digits "
            "(or all 64 for a SHA-256 repository).",
            field=field,
        )
    return value.lower()


def validate_port(value: int, *, field: str = "port") -> int:
    """A TCP port number from 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise BadUserInput(
            f"Port {value!r} is not allowed: use a number from 1 to 65535.", field=field
        )
    return value


def validate_healthcheck_path(value: str, *, field: str = "healthcheckPath") -> str:
    """An HTTP path such as ``/healthz``: starts with /, printable ASCII without spaces or #."""
    if not HEALTHCHECK_PATH.fullmatch(value):
        raise BadUserInput(
            f"Health check path {_shown(value)} is not allowed: start with / and use at most "
            "255 printable ASCII characters, without spaces or #.",
            field=field,
        )
    return value


def validate_custom_domain(
    value: str, *, platform_domains: Collection[str] = (), field: str = "domain"
) -> str:
    """A user's own domain such as ``shop.example.com``; returned lowercased."""
    rules = "use a domain name you own, such as shop.example.com"
    if not value.isascii():
        raise BadUserInput(
            f"Domain {_shown(value)} is not allowed: {rules}, with international names "
            "written in punycode (xn--…).",
            field=field,
        )
    try:
        domain = validate_domain(value)
    except ValueError:
        raise BadUserInput(
            f"Domain {_shown(value)} is not allowed: {rules}, made of parts of 1-63 lowercase "
            f"letters, digits and inner hyphens, at most {MAX_DOMAIN_LENGTH} characters.",
            field=field,
        ) from None
    labels = domain.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        raise BadUserInput(f"Domain {value!r} is not allowed: {rules}.", field=field)
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        raise BadUserInput(f"Domain {value!r} is an IP address: {rules}.", field=field)
    for platform_domain in platform_domains:
        platform_domain = platform_domain.strip().lower().removesuffix(".")
        if domain == platform_domain or domain.endswith(f".{platform_domain}"):
            raise BadUserInput(
                f"Domain {domain!r} belongs to the platform ({platform_domain}); "
                "use the platform subdomain instead.",
                field=field,
            )
    return domain


def normalize_email(value: str) -> str:
    """An email address as Digi stores it: surrounding whitespace removed, lowercased."""
    return value.strip().lower()


def validate_email(value: str, *, field: str = "email") -> str:
    """An email address such as ``ada@example.com``; returned normalised."""
    email = normalize_email(value)
    problem = BadUserInput(
        f"Email {_shown(email)} is not allowed: use name@domain, at most {MAX_EMAIL_LENGTH} "
        "characters, with a domain such as example.com (or localhost).",
        field=field,
    )
    # Checked before lowercasing, which turns some look-alikes (the Kelvin sign K) into ASCII.
    if not value.isascii() or len(email) > MAX_EMAIL_LENGTH or email.count("@") != 1:
        raise problem
    local_part, domain = email.split("@")
    if not EMAIL_LOCAL_PART.fullmatch(local_part):
        raise problem
    try:
        valid_domain = validate_domain(domain)
    except ValueError:
        raise problem from None
    labels = domain.split(".")
    if valid_domain != domain or labels[-1].isdigit():
        raise problem
    if len(labels) < 2 and domain != "localhost":
        raise problem
    return email


def check_password_rules(
    password: str, *, email: str | None = None, field: str = "password"
) -> None:
    """Refuses a password that is too short or long, one repeated character, or the email."""
    # The messages never repeat the password.
    too_long_or_short = not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    repeated = len(set(password)) <= 1
    same_as_email = False
    if email:
        email = email.strip().casefold()
        candidates = {email, email.split("@", 1)[0]}
        same_as_email = password.strip().casefold() in candidates
    if too_long_or_short or repeated or same_as_email:
        raise BadUserInput(PASSWORD_RULES, field=field)


def record_id(value: object, what: str, *, field: str = "id") -> int:
    """A database id from a GraphQL ``ID``; one that is not a number names nothing: NOT_FOUND."""
    try:
        return int(str(value))
    except ValueError:
        raise NotFound(f"no {what} {value}", field=field) from None

"""Validation of what users type: each validator's accepted and refused examples, and its errors."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from digi_core import names
from digi_core.errors import BadUserInput

SHA256 = "0123456789abcdef" * 4
HOSTILE = [
    "",
    " ",
    "\n",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x00b",
    "a\x1bb",
    "a b",
    "$(reboot)",
    "`reboot`",
    "a;b",
    "a|b",
    "a&b",
    "a>b",
    "'a'",
    '"a"',
    "../etc",
    "--privileged",
    "-v",
]


def refused(check: Callable[[], object], field: str) -> BadUserInput:
    """Runs ``check``, which must refuse with BAD_USER_INPUT on ``field``; returns the error."""
    with pytest.raises(BadUserInput) as caught:
        check()
    assert caught.value.code == "BAD_USER_INPUT"
    assert caught.value.field == field
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": field}
    assert caught.value.message
    return caught.value


# --- labels and domains (the original ValueError API) -------------------------------------


@pytest.mark.parametrize("value", ["a", "0", "web", "my-app-2", "a" * 63, "xn--bcher-kva"])
def test_label_accepts(value: str) -> None:
    assert names.validate_label(value) == value


@pytest.mark.parametrize("value", ["", "-a", "a-", "A", "a_b", "a.b", "a" * 64, "a\n", "é"])
def test_label_refuses_with_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="1-63 lowercase"):
        names.validate_label(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("example.com", "example.com"), (" Example.COM. ", "example.com"), ("localhost", "localhost")],
)
def test_domain_normalises(value: str, expected: str) -> None:
    assert names.validate_domain(value) == expected


@pytest.mark.parametrize("value", ["", ".", "a..b", "-a.com", "a_b.com", "a" * 64 + ".com"])
def test_domain_refuses_with_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        names.validate_domain(value)


# --- service and component names ----------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "web", "my-app", "app2", "a1-b2-c3", "shop-api", "a" * 24, "x-" * 11 + "yz"]
)
def test_service_name_accepts(value: str) -> None:
    assert names.validate_service_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "a" * 25,
        "1app",
        "-app",
        "app-",
        "my--app",
        "xn--app",
        "My-App",
        "APP",
        "my_app",
        "my.app",
        "my/app",
        "app\n",
        "\napp",
        "\u0430pp",  # Cyrillic a
        "\uff41pp",  # fullwidth a
        "app\u200b",  # zero-width space
        "caf\u00e9",
    ],
)
def test_service_name_refuses(value: str) -> None:
    error = refused(lambda: names.validate_service_name(value), "name")
    assert "lowercase letters" in error.message


@pytest.mark.parametrize("value", sorted(names.RESERVED_NAMES))
def test_service_name_refuses_reserved(value: str) -> None:
    error = refused(lambda: names.validate_service_name(value), "name")
    assert "reserved" in error.message


def test_reserved_names_are_the_documented_ones() -> None:
    assert {"api", "www", "admin", "graphql", "healthz", "billing", "localhost"} <= (
        names.RESERVED_NAMES
    )
    assert len(names.RESERVED_NAMES) == 32
    assert all(names.SERVICE_NAME.fullmatch(name) for name in names.RESERVED_NAMES)


def test_service_name_field_can_be_renamed() -> None:
    refused(lambda: names.validate_service_name("Bad", field="newName"), "newName")


@pytest.mark.parametrize("value", ["web", "worker-2", "a", "a" * 18, "api", "www", "db"])
def test_component_name_accepts(value: str) -> None:
    assert names.validate_component_name(value) == value


@pytest.mark.parametrize(
    "value", [*HOSTILE, "a" * 19, "2web", "web-", "we--b", "Web", "w_b", "w\u0435b", "web\n"]
)
def test_component_name_refuses(value: str) -> None:
    refused(lambda: names.validate_component_name(value), "name")


# --- slugs and subdomains -----------------------------------------------------------------

SLUG = re.compile(r"(?P<name>[a-z0-9-]+)-(?P<random>[a-z0-9]{12})")


@pytest.mark.parametrize("name", ["a", "web", "a" * 24, "my-shop"])
def test_new_slug_format(name: str) -> None:
    slug = names.new_slug(name)
    match = SLUG.fullmatch(slug)
    assert match is not None
    assert match["name"] == name
    assert names.validate_label(slug) == slug


def test_new_slug_is_random() -> None:
    slugs = {names.new_slug("web") for _ in range(200)}
    assert len(slugs) == 200
    used = {character for slug in slugs for character in slug.removeprefix("web-")}
    assert used <= set(names.SLUG_ALPHABET)
    assert len(used) > 26  # letters and digits both appear


def test_component_subdomain_format() -> None:
    slug = names.new_slug("shop")
    subdomain = names.component_subdomain(slug, "worker")
    assert re.fullmatch(rf"{re.escape(slug)}-worker-[0-9a-f]{{4}}", subdomain)
    assert names.validate_label(subdomain) == subdomain


def test_component_subdomain_longest_names_fit_one_label() -> None:
    slug = names.new_slug(names.validate_service_name("a" * 24))
    subdomain = names.component_subdomain(slug, names.validate_component_name("b" * 18))
    assert len(subdomain) <= 63
    assert names.validate_label(subdomain) == subdomain


def test_component_subdomain_is_random() -> None:
    subdomains = {names.component_subdomain("shop-abcdefghijkl", "web") for _ in range(100)}
    assert len(subdomains) > 50
    suffixes = {subdomain.rsplit("-", 1)[1] for subdomain in subdomains}
    assert all(re.fullmatch(r"[0-9a-f]{4}", suffix) for suffix in suffixes)


def test_component_subdomain_refuses_what_is_not_a_label() -> None:
    with pytest.raises(ValueError):
        names.component_subdomain("a" * 60, "web")


# --- environment variables ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["A", "_", "PORT", "database_url", "_PRIVATE", "A1_B2", "X" * 128, "DIGIT", "DIGI"]
)
def test_env_key_accepts(value: str) -> None:
    assert names.validate_env_key(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "1A",
        "A-B",
        "A.B",
        "A=B",
        "PATH\n",
        "X" * 129,
        "ÄPFEL",
        "A\u200bB",
        "\uff30\uff21\uff34\uff28",  # fullwidth
    ],
)
def test_env_key_refuses(value: str) -> None:
    error = refused(lambda: names.validate_env_key(value), "key")
    assert "letters, digits and underscores" in error.message


@pytest.mark.parametrize("value", ["DIGI_", "DIGI_SECRET", "digi_token", "Digi_X"])
def test_env_key_refuses_platform_prefix(value: str) -> None:
    error = refused(lambda: names.validate_env_key(value), "key")
    assert "DIGI_" in error.message
    assert "reserved" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x",
        "postgres://u:p@db/x",
        "line one\nline two",
        "$(not run) ; `not run either`",
        "ünïcödé ✓ 漢字",
        "a" * names.MAX_ENV_VALUE_BYTES,
        "é" * (names.MAX_ENV_VALUE_BYTES // 2),
    ],
)
def test_env_value_accepts(value: str) -> None:
    assert names.validate_env_value(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        "\x00",
        "a" * (names.MAX_ENV_VALUE_BYTES + 1),
        "é" * (names.MAX_ENV_VALUE_BYTES // 2 + 1),  # 2 bytes each in UTF-8
        "bad surrogate \udc80",
    ],
)
def test_env_value_refuses(value: str) -> None:
    error = refused(lambda: names.validate_env_value(value), "value")
    assert value not in error.message


def test_env_value_error_never_repeats_the_secret() -> None:
    secret = "hunter2-secret" + "x" * names.MAX_ENV_VALUE_BYTES
    error = refused(lambda: names.validate_env_value(secret), "value")
    assert "hunter2" not in error.message
    assert "32 KiB" in error.message


# --- Docker image references --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "nginx",
        "nginx:1.25-alpine",
        "library/redis:7",
        "ghcr.io/owner/app:v1.2.3",
        f"localhost:5000/team/app@sha256:{SHA256}",
        "registry.example.com:8443/a/b/c:latest",
        f"nginx:1.25@sha256:{SHA256}",
        "my_app",
        "my__app",
        "my.app",
        "my---app",
        "a/b/c/d",
        "nginx:LATEST",
        "nginx:_x",
        "nginx:" + "t" * 128,
        "Registry.Example.COM/app",
        "192.168.1.10:5000/app",
        "[::1]:5000/app",
        "a" * 255,
    ],
)
def test_image_reference_accepts(value: str) -> None:
    assert names.validate_image_reference(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "Nginx",
        "NGINX:latest",
        "-v",
        "nginx:",
        "nginx:-x",
        "nginx:.x",
        "nginx:" + "t" * 129,
        "a//b",
        "/nginx",
        "nginx/",
        "nginx latest",
        "nginx:latest\n",
        "--privileged",
        "$(reboot)",
        "a;b",
        "nginx&&reboot",
        "my_-app",
        "my._app",
        "my___app",
        "_app",
        "app_",
        "nginx@sha256:abc",
        f"nginx@sha256:{SHA256.upper()}",
        f"nginx@md5:{SHA256}",
        "nginx@latest",
        "\uff4eginx",  # fullwidth n
        "ng\u0456nx",  # Cyrillic i
        "nginx:1\u200b",
        "nginx:tág",
        "-registry.io/app",
        "registry.io:/app",
        "registry.io:port/app",
        "a" * 256,
        "a/" * 200 + "a",
    ],
)
def test_image_reference_refuses(value: str) -> None:
    error = refused(lambda: names.validate_image_reference(value), "image")
    assert "image reference" in error.message


@pytest.mark.parametrize(
    "value", ["a" + "-" * 250 + "!", "a." * 120 + "-/", "a" + "_a" * 120 + "__", "a:" * 120 + "/"]
)
def test_image_reference_stays_fast_on_hostile_input(value: str) -> None:
    started = time.monotonic()
    refused(lambda: names.validate_image_reference(value), "image")
    assert time.monotonic() - started < 0.5


# --- Git URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://github.com/owner/repo",
        "https://github.com/owner/repo.git",
        "http://git.internal:8080/team/repo.git",
        "https://gitlab.example.com/group/sub-group/repo",
        "https://[2001:db8::1]/repo.git",
        "ssh://git@github.com/owner/repo.git",
        "ssh://github.com:2222/owner/repo.git",
        "ssh://deploy.user@10.0.0.5/~deploy/repo.git",
        "git://git.kernel.org/pub/scm/git/git.git",
        "git@github.com:owner/repo.git",
        "git@gitlab.example.com:group/repo",
        "deploy@10.0.0.5:/srv/git/repo.git",
        "https://example.com/a%20b/repo",
    ],
)
def test_git_url_accepts(value: str) -> None:
    assert names.validate_git_url(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "fd::7,8",
        "remote-helper::https://example.com/repo",
        "git+ssh::whatever",
        "-uhttps://github.com/owner/repo",
        "--upload-pack=touch /tmp/pwned",
        "https://github.com/owner/repo --upload-pack=x",
        "https://github.com/owner/repo\n--upload-pack=x",
        "https://github.com/owner/repo\x00",
        "https://github.com/owner/repo\t",
        "https://github.com/owner/repo\u00a0",
        "https://github.com/owner/repo\u200b",
        "https://github.com/owner/repo\u202e",
        "https://g\u0456thub.com/owner/repo",  # Cyrillic i
        "https:///owner/repo",
        "https://",
        "https://github.com",
        "https://github.com/",
        "https://-github.com/owner/repo",
        "https://github.com/owner/repo;reboot",
        "https://github.com/owner/$(reboot)",
        "https://github.com/owner/`reboot`",
        "https://github.com/owner/repo|sh",
        "ssh://-oProxyCommand=touch%20/tmp/pwned/repo",
        "ssh://git@-oProxyCommand=x/repo",
        "ssh://-user@host/repo",
        "ssh://git@/repo",
        "ssh://user:password@host/repo",
        "git://user@host/repo",
        "git@github.com:-oProxyCommand=x",
        "git@:repo",
        "git@github.com:",
        "github.com:owner/repo",
        "ftp://example.com/repo",
        "HTTPS://github.com/owner/repo",
        "/srv/git/repo",
        "./repo",
        "repo",
        "https://example.com/" + "a" * 500,
    ],
)
def test_git_url_refuses(value: str) -> None:
    refused(lambda: names.validate_git_url(value), "repoUrl")


@pytest.mark.parametrize(
    "value",
    [
        "https://user:pass@github.com/owner/repo",
        "https://ghp_secrettoken@github.com/owner/repo",
        "http://user@git.example.com/repo",
        "HTTPS://user:pass@github.com/owner/repo",
        "https://:pass@github.com/owner/repo",
    ],
)
def test_git_url_refuses_credentials_without_repeating_them(value: str) -> None:
    error = refused(lambda: names.validate_git_url(value), "repoUrl")
    assert "GitHub token" in error.message
    assert "github.com" not in error.message
    assert "user:" not in error.message
    assert ":pass" not in error.message
    assert "secrettoken" not in error.message


def test_git_url_refuses_transport_helpers_by_name() -> None:
    error = refused(lambda: names.validate_git_url("ext::sh -c id"), "repoUrl")
    assert "spaces" in error.message  # the space is caught first
    error = refused(lambda: names.validate_git_url("ext::sh%20-c%20id"), "repoUrl")
    assert "ext::" in error.message


def test_git_url_message_says_what_is_allowed() -> None:
    error = refused(lambda: names.validate_git_url("ftp://example.com/repo"), "repoUrl")
    assert "https://host/path" in error.message
    assert "user@host:path" in error.message


def test_git_url_file_inside_allowed_root(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "app"
    repo.mkdir(parents=True)
    roots = [tmp_path / "repos"]
    assert names.validate_git_url(f"file://{repo}", allowed_file_roots=roots) == f"file://{repo}"
    assert (
        names.validate_git_url(f"file://{repo}/../app/.", allowed_file_roots=roots)
        == f"file://{repo}"
    )


def test_git_url_file_is_refused_without_roots(tmp_path: Path) -> None:
    error = refused(lambda: names.validate_git_url(f"file://{tmp_path}"), "repoUrl")
    assert "file:// URLs are limited" in error.message


@pytest.mark.parametrize(
    "suffix",
    [
        "/../outside",
        "/app/../../outside",
        "/../repos-evil/app",
        "/escape-link",
        "/escape-link/sub",
        "/app%2f..%2f..%2foutside",
        "/app?x=1",
        "/app#x",
    ],
)
def test_git_url_file_outside_root_is_refused(tmp_path: Path, suffix: str) -> None:
    root = tmp_path / "repos"
    (root / "app").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "repos-evil" / "app").mkdir(parents=True)
    (root / "escape-link").symlink_to(tmp_path / "outside")
    error = refused(
        lambda: names.validate_git_url(f"file://{root}{suffix}", allowed_file_roots=[root]),
        "repoUrl",
    )
    assert "file:// URLs are limited" in error.message


@pytest.mark.parametrize(
    "value", ["file://localhost/srv/repo", "file:relative/repo", "file:/srv/repo", "FILE:///srv"]
)
def test_git_url_file_other_forms_are_refused(value: str) -> None:
    refused(lambda: names.validate_git_url(value, allowed_file_roots=[Path("/")]), "repoUrl")


def test_git_url_file_root_given_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "app").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    url = names.validate_git_url(f"file://{real}/app", allowed_file_roots=[tmp_path / "link"])
    assert url == f"file://{real / 'app'}"


# --- branches and commits -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "main",
        "master",
        "feature/login",
        "release/1.2.x",
        "fix-123_bug",
        "user/name/topic",
        "v1.0",
        "a",
        "@abc",
        "a@b",
        "lock.d",
        "HEADS",
        "x" * 255,
        "a.b.lock.c",
    ],
)
def test_branch_accepts(value: str) -> None:
    assert names.validate_branch(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "-main",
        "--upload-pack=x",
        "/main",
        "main/",
        "main.",
        "a//b",
        "a..b",
        "a@{1}",
        "@",
        "HEAD",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        ".hidden",
        "a/.hidden",
        "main.lock",
        "a/b.lock/c",
        "main\x7f",
        "m\u0430in",  # Cyrillic a
        "main\u200b",
        "main$HOME",
        "a(b)",
        "a<b",
        "x" * 256,
    ],
)
def test_branch_refuses(value: str) -> None:
    error = refused(lambda: names.validate_branch(value), "branch")
    assert "branch names are" in error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abcdef0", "abcdef0"),
        ("ABCDEF0", "abcdef0"),
        ("0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
        (SHA256.upper(), SHA256),
    ],
)
def test_commit_accepts_and_lowercases(value: str, expected: str) -> None:
    assert names.validate_commit(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "abcdef",
        "a" * 41,
        "a" * 63,
        "a" * 65,
        "abcdefg",
        "HEAD",
        "main",
        "abcdef0\n",
        "abcdef0 ",
        "\uff10\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
        "abc-def0",
    ],
)
def test_commit_refuses(value: str) -> None:
    refused(lambda: names.validate_commit(value), "commit")


# --- ports and health checks --------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 80, 443, 3000, 8080, 65535])
def test_port_accepts(value: int) -> None:
    assert names.validate_port(value) == value


@pytest.mark.parametrize("value", [0, -1, 65536, 10**9, True, False])
def test_port_refuses(value: int) -> None:
    error = refused(lambda: names.validate_port(value), "port")
    assert "1 to 65535" in error.message


@pytest.mark.parametrize("value", ["80", 80.0, None])
def test_port_refuses_what_is_not_an_integer(value: object) -> None:
    refused(lambda: names.validate_port(value), "port")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["/", "/healthz", "/api/health?full=1", "/status/ok.json", "/a%20b", "/" + "a" * 254]
)
def test_healthcheck_path_accepts(value: str) -> None:
    assert names.validate_healthcheck_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "healthz",
        "http://example.com/healthz",
        "/health check",
        "/healthz#top",
        "/healthz\n",
        "/healthz\r\nX-Injected: 1",
        "/heälth",
        "/health\u200b",
        "/" + "a" * 255,
    ],
)
def test_healthcheck_path_refuses(value: str) -> None:
    refused(lambda: names.validate_healthcheck_path(value), "healthcheckPath")


# --- custom domains -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", "example.com"),
        ("shop.example.com", "shop.example.com"),
        ("Shop.Example.COM.", "shop.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a1.b2.co.uk", "a1.b2.co.uk"),
        ("digi.example.com", "digi.example.com"),
        ("notdigi.example.net", "notdigi.example.net"),
    ],
)
def test_custom_domain_accepts(value: str, expected: str) -> None:
    platform = ["digi.example.net", "apps.example.org"]
    assert names.validate_custom_domain(value, platform_domains=platform) == expected


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "localhost",
        "com",
        "example",
        "1.2.3.4",
        "10.0.0.1",
        "example.123",
        "::1",
        "[::1]",
        "example..com",
        "-example.com",
        "example-.com",
        "ex_ample.com",
        "*.example.com",
        "example.com/path",
        "example.com:443",
        "https://example.com",
        "ex\u0430mple.com",  # Cyrillic a
        "EXAMPLE.CO\u212a",  # Kelvin sign lowercases to k
        "bücher.example",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_custom_domain_refuses(value: str) -> None:
    refused(lambda: names.validate_custom_domain(value), "domain")


@pytest.mark.parametrize(
    "value",
    ["digi.example.net", "app.digi.example.net", "a.b.DIGI.example.net.", "apps.example.org"],
)
def test_custom_domain_refuses_platform_domains(value: str) -> None:
    platform = ["Digi.Example.NET.", "apps.example.org"]
    error = refused(
        lambda: names.validate_custom_domain(value, platform_domains=platform), "domain"
    )
    assert "platform subdomain" in error.message


# --- email and passwords ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace@Example.COM \n", "ada.lovelace@example.com"),
        ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("admin@localhost", "admin@localhost"),
        ("x_y-z!#$%&*/=?^`{|}~@example.com", "x_y-z!#$%&*/=?^`{|}~@example.com"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ],
)
def test_email_accepts_and_normalises(value: str, expected: str) -> None:
    assert names.normalize_email(value) == expected
    assert names.validate_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "ada",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "a@b@example.com",
        "ada@example",
        "ada@example.com.",
        "ada@example..com",
        "ada@-example.com",
        "ada@1.2.3.4",
        "ada@[127.0.0.1]",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        "ada@ example.com",
        "ada\n@example.com",
        "ada@example.com\nBcc: victim@example.com",
        "ada@example.com>",
        '"ada"@example.com',
        "<ada@example.com>",
        "ada(comment)@example.com",
        "ada,bob@example.com",
        "ada;bob@example.com",
        "ada:x@example.com",
        "ada\\x@example.com",
        "ada[x]@example.com",
        "ad\u0430@example.com",  # Cyrillic a
        "ada@ex\u0430mple.com",  # Cyrillic a
        "ada@EXAMPLE.CO\u212a",  # Kelvin sign
        "ädä@example.com",
        "a" * 65 + "@example.com",
        "a@" + ("b" * 62 + ".") * 4 + "com",
    ],
)
def test_email_refuses(value: str) -> None:
    error = refused(lambda: names.validate_email(value), "email")
    assert "name@domain" in error.message


@pytest.mark.parametrize(
    ("password", "email"),
    [
        ("correct horse battery staple", None),
        ("0123456789", None),
        ("aaaaaaaaab", None),
        ("x" * 255 + "y", None),
        ("correct horse", "ada@example.com"),
        ("ada@example.co", "ada@example.com"),
        ("adalovelace", "ada@example.com"),
        ("pässwörd-ünïcode", None),
    ],
)
def test_password_accepts(password: str, email: str | None) -> None:
    names.check_password_rules(password, email=email)


@pytest.mark.parametrize(
    ("password", "email"),
    [
        ("", None),
        ("short", None),
        ("123456789", None),
        ("x" * 257, None),
        ("aaaaaaaaaa", None),
        ("          ", None),
        ("ada.lovelace@example.com", "ada.lovelace@example.com"),
        ("ADA.LOVELACE@EXAMPLE.COM", "ada.lovelace@example.com"),
        ("ada.lovelace", "Ada.Lovelace@example.com"),
        ("ADA.LOVELACE", "ada.lovelace@example.com"),
    ],
)
def test_password_refuses_stating_every_rule(password: str, email: str | None) -> None:
    error = refused(lambda: names.check_password_rules(password, email=email), "password")
    assert error.message == names.PASSWORD_RULES
    assert error.message.startswith("Passwords need 10 to 256 characters")
    assert "repeated" in error.message
    assert "email" in error.message
    if len(password) >= 4 and not password.isspace():
        assert password not in error.message


# --- messages -----------------------------------------------------------------------------


def test_overlong_values_are_cut_short_in_messages() -> None:
    error = refused(lambda: names.validate_service_name("A" * 10_000), "name")
    assert len(error.message) < 300
    assert "…" in error.message


def test_control_characters_are_escaped_in_messages() -> None:
    error = refused(lambda: names.validate_branch("main\nInjected: yes"), "branch")
    assert "\n" not in error.message
    assert "\\n" in error.message

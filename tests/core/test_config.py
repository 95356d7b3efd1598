"""Settings: embedded defaults, the platform secret, and one clear line per bad value."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from digi_core.config import load_settings
from digi_core.errors import ConfigError
from tests.conftest import DIGI, TEST_SECRET


def test_embedded_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGI_DATA_DIR", str(clean_env / "data"))
    settings = load_settings()
    assert settings.embedded
    assert settings.database_url == f"sqlite://{clean_env / 'data' / 'digi.sqlite3'}"
    assert settings.redis_url is None
    assert settings.compute == "local"
    assert settings.platform_domain == "localhost"
    assert settings.port == 4000
    assert not settings.billing_enabled
    assert not settings.production


def test_data_dir_defaults_under_the_users_data_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(clean_env))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert load_settings().data_dir == clean_env / ".local" / "share" / "digi"


def test_embedded_secret_is_generated_once_with_mode_0600(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGI_DATA_DIR", str(clean_env / "data"))
    first = load_settings().secret_value
    secret_file = clean_env / "data" / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_settings().secret_value == first


def test_seed_secret_name_is_accepted(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", TEST_SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgres://digi@db/digi")
    assert load_settings().secret_value == TEST_SECRET


def test_postgres_without_secret_names_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://digi@db/digi")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("DIGI_SECRET: required")
    assert not (clean_env / "data").exists()


def test_short_secret_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGI_SECRET", "too-short")
    monkeypatch.setenv("DIGI_DATA_DIR", str(clean_env / "data"))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [
        "DIGI_SECRET: must be at least 32 characters long (openssl rand -hex 32 makes one)"
    ]


def test_every_bad_value_gets_its_own_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGI_PORT", "eighty")
    monkeypatch.setenv("DATABASE_URL", "mysql://root@db/digi")
    monkeypatch.setenv("PLATFORM_DOMAIN", "-bad-.example.com")
    monkeypatch.setenv("REDIS_URL", "http://cache")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    names = sorted(problem.split(":", 1)[0] for problem in caught.value.problems)
    assert names == ["DATABASE_URL", "DIGI_PORT", "PLATFORM_DOMAIN", "REDIS_URL"]
    assert any("sqlite:// or postgres://" in problem for problem in caught.value.problems)


def test_dotenv_file_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        f"PLATFORM_DOMAIN=apps.example.com\nDIGI_DATA_DIR={clean_env / 'd'}\n"
        "REDIS_URL=redis://127.0.0.1:6379/0\n"
    )
    settings = load_settings()
    assert settings.platform_domain == "apps.example.com"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_env_example_documents_every_setting() -> None:
    from digi_core.config import Settings

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        aliases = [field.alias] if field.alias else list(field.validation_alias.choices)  # type: ignore[union-attr]
        assert any(f"{alias}=" in example for alias in aliases), f"{name} missing"


def test_cli_reports_bad_config_without_traceback(subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "DIGI_PORT": "eighty", "DATABASE_URL": "mysql://x/y"}
    result = subprocess.run([DIGI, "server"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert "DIGI_PORT:" in result.stderr and "DATABASE_URL:" in result.stderr

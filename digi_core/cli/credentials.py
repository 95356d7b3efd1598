"""Which API the CLI talks to and with which token: ``--api`` / ``DIGI_API_URL``, and a token
from ``DIGI_TOKEN`` or saved by `digi login` in the user's config directory (mode 0600)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from yarl import URL

from digi_core.errors import BadUserInput

DEFAULT_API_URL = "http://localhost:4000"
TOKEN_VARIABLE = "DIGI_TOKEN"


def normalised_api_url(value: str) -> str:
    """``host:port`` gets ``http://``; no trailing slash, so the URL is a stable key."""
    text = value.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    url = URL(text)
    if url.scheme not in {"http", "https"} or not url.host:
        raise BadUserInput(f"--api {value!r} is not an http(s) URL, e.g. {DEFAULT_API_URL}")
    return text


def credentials_path() -> Path:
    return Path(platformdirs.user_config_dir("digi")) / "credentials.json"


@dataclass(frozen=True)
class SavedLogin:
    """What `digi login` keeps for one API."""

    token: str
    email: str = ""
    # A token `digi login --email` made is revoked again by `digi logout`; a pasted one is not.
    made_by_login: bool = False


def _read_all() -> dict[str, Any]:
    try:
        saved = json.loads(credentials_path().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _write_all(saved: dict[str, Any]) -> None:
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    # Created 0600 before anything is written: the token is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(saved, file, indent=2)


def saved_login(api_url: str) -> SavedLogin | None:
    entry = _read_all().get(api_url)
    if not isinstance(entry, dict) or not entry.get("token"):
        return None
    return SavedLogin(
        token=str(entry["token"]),
        email=str(entry.get("email") or ""),
        made_by_login=bool(entry.get("madeByLogin")),
    )


def save_login(api_url: str, login: SavedLogin) -> None:
    saved = _read_all()
    saved[api_url] = {
        "token": login.token,
        "email": login.email,
        "madeByLogin": login.made_by_login,
    }
    _write_all(saved)


def forget_login(api_url: str) -> SavedLogin | None:
    """Remove the saved token for ``api_url``; answers what was saved."""
    login = saved_login(api_url)
    if login is not None:
        saved = _read_all()
        saved.pop(api_url, None)
        _write_all(saved)
    return login


def token_for(api_url: str) -> tuple[str | None, str]:
    """The token to send and where it comes from (said when the API refuses it)."""
    from_environment = os.environ.get(TOKEN_VARIABLE, "").strip()
    if from_environment:
        return from_environment, f"from {TOKEN_VARIABLE}"
    login = saved_login(api_url)
    if login is not None:
        return login.token, f"saved in {credentials_path()}"
    return None, ""

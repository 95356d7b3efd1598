"""Signing in and out, whoami and status, and the one-line errors of a refused token or an
unreachable API."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.cli.conftest import Cli
from tests.core.api.conftest import PASSWORD
from tests.core.deploys.conftest import Platform, free_port


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    return line


def credentials(cli: Cli) -> Path:
    return Path(cli.env["HOME"]) / ".config" / "digi" / "credentials.json"


async def test_login_with_a_token_saves_it_privately(cli: Cli, platform: Platform) -> None:
    user, token = await platform.user()
    result = await cli("login", "--token", token)
    assert f"as {user.email} (FREE plan)" in result.stdout
    saved = credentials(cli)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert json.loads(saved.read_text())[cli.env["DIGI_API_URL"]]["token"] == token

    me = (await cli("whoami", "--json")).json()
    assert (me["email"], me["plan"], me["role"]) == (user.email, "FREE", "USER")
    report = (await cli("status", "--json")).json()
    assert report["health"]["status"] == "ok" and report["version"] == "0.1.0"
    assert report["user"]["plan"] == "FREE"
    assert "plan FREE" in (await cli("status")).stdout

    await cli("logout")
    refused = await cli("whoami", check=False)
    assert refused.returncode == 3
    assert "not signed in" in one_line_error(refused.stderr)
    assert "run `digi login`" in refused.stderr


async def test_a_bad_token_is_one_line_and_exit_3(cli: Cli) -> None:
    result = await cli("login", "--token", "digi_forged", check=False)
    assert result.returncode == 3
    line = one_line_error(result.stderr)
    assert line.startswith("error [UNAUTHENTICATED]:") and "this token is not valid" in line
    assert not credentials(cli).exists()

    result = await cli.with_env(DIGI_TOKEN="digi_forged")("services", "list", check=False)
    assert result.returncode == 3
    assert "(from DIGI_TOKEN)" in one_line_error(result.stderr)


async def test_email_login_reads_the_password_from_stdin_and_logout_revokes(
    cli: Cli, platform: Platform
) -> None:
    user, _ = await platform.user()
    await cli("login", "--email", user.email, input=PASSWORD + "\n")
    token = json.loads(credentials(cli).read_text())[cli.env["DIGI_API_URL"]]["token"]
    assert (await cli("whoami", "--json")).json()["email"] == user.email
    await cli("logout")
    revoked = await cli.with_env(DIGI_TOKEN=token)("whoami", check=False)
    assert revoked.returncode == 3

    wrong = await cli("login", "--email", user.email, input="wrong password\n", check=False)
    assert wrong.returncode == 3
    assert "wrong email or password" in one_line_error(wrong.stderr)


async def test_an_unreachable_api_is_one_line_and_exit_69(cli: Cli) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    for command in (["status"], ["services", "list"], ["logs", "1", "web"]):
        result = await cli(*command, "--api", api, check=False)
        assert result.returncode == 69, (command, result)
        line = one_line_error(result.stderr)
        assert line.startswith("error [UNREACHABLE]: cannot reach Digi's API at " + api)
        assert "`digi server`" in line

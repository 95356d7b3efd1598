"""Git checkouts: a GitHub token reaches git through its environment only, never a command
line, a log line or an error; refused URLs never reach git."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from digi_core import sources
from digi_core.errors import BadUserInput

TOKEN = "ghp_" + "S3cr3tT0ken" * 3


async def test_a_github_token_never_shows_in_logs_errors_or_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[str, ...]] = []
    original = sources.asyncio.create_subprocess_exec

    async def recording(*arguments: str, **kwargs: object) -> object:
        started.append(arguments)
        return await original(*arguments, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sources.asyncio, "create_subprocess_exec", recording)
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    # No network here: the clone fails, which is where URLs and credentials usually leak.
    with pytest.raises(sources.SourceError) as failure:
        await sources.git_checkout(
            "https://github.com/acme/private.git",
            "main",
            None,
            tmp_path / "src",
            log,
            github_token=TOKEN,
        )
    shown = "\n".join([failure.value.message, *lines, *(" ".join(a) for a in started)])
    assert started and "git clone failed" in failure.value.message
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert TOKEN not in shown and basic not in shown  # nor the header's base64 form


def test_the_token_goes_to_git_as_an_extra_header_for_github_only(tmp_path: Path) -> None:
    async def quiet(line: str) -> None:
        return None

    def configured(url: str) -> str:
        git = sources._Git(url, quiet, TOKEN)
        result = subprocess.run(
            ["git", "config", "--list"], env=git.env, capture_output=True, text=True, check=True
        )
        return result.stdout

    assert "http.https://github.com/.extraheader=Authorization: Basic" in configured(
        "https://github.com/acme/private.git"
    )
    # Another host never gets it.
    assert "extraheader" not in configured("https://gitlab.example.com/acme/private.git")
    assert "protocol.ext.allow=never" in configured("https://gitlab.example.com/acme/x.git")


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", "file:///etc"],
)
async def test_refused_urls_never_reach_git(tmp_path: Path, url: str) -> None:
    async def quiet(line: str) -> None:
        return None

    with pytest.raises(BadUserInput):
        await sources.git_checkout(url, None, None, tmp_path / "src", quiet)
    assert not (tmp_path / "src").exists()

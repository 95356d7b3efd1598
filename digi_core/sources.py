"""Source trees for builds: a Git checkout of a component's repository at its branch or commit.

Git runs as a subprocess with an argument list (never a shell), with only the transports Digi
allows, without prompts, and with a GitHub token passed through Git's environment config, so
it shows neither on a command line nor in a log.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from digi_core import names
from digi_core.errors import DigiError
from digi_core.providers import LogSink

GIT_TIMEOUT_SECONDS = 600
GITHUB_HOSTS = {"github.com", "www.github.com"}


class SourceError(DigiError):
    """The source could not be fetched; the message says why and what to check."""

    code = "SOURCE_FAILED"


@dataclass
class Checkout:
    path: Path
    commit_sha: str


async def git_checkout(
    repo_url: str,
    branch: str | None,
    commit: str | None,
    into: Path,
    log: LogSink,
    *,
    github_token: str | None = None,
) -> Checkout:
    """Clone ``repo_url`` (shallow) into ``into`` at ``commit``, else the tip of ``branch``
    (else the default branch); answers the checked-out commit."""
    url = names.validate_git_url(repo_url)
    # What an interrupted attempt left goes first.
    await asyncio.to_thread(shutil.rmtree, into, True)
    await asyncio.to_thread(into.parent.mkdir, parents=True, exist_ok=True)
    git = _Git(url, log, github_token)
    clone = ["clone", "--depth", "1", "--no-tags", "--single-branch"]
    if branch:
        clone += ["--branch", names.validate_branch(branch)]
    await git.run(*clone, "--", url, str(into))
    if commit:
        sha = names.validate_commit(commit)
        await git.run("-C", str(into), "fetch", "--depth", "1", "origin", sha)
        await git.run("-C", str(into), "checkout", "--quiet", "--detach", "FETCH_HEAD")
    head = (await git.run("-C", str(into), "rev-parse", "HEAD", quiet=True)).strip()
    await log(f"checked out {head[:12]}")
    return Checkout(into, head)


class _Git:
    def __init__(self, url: str, log: LogSink, github_token: str | None) -> None:
        self.log = log
        self.secrets: list[str] = []
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/nonexistent",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            # ssh would ask about host keys and passwords: never wait for an answer.
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        }
        config = {"protocol.ext.allow": "never", "protocol.file.allow": "never"}
        if github_token and urlsplit(url).hostname in GITHUB_HOSTS:
            basic = base64.b64encode(f"x-access-token:{github_token}".encode()).decode()
            config["http.https://github.com/.extraHeader"] = f"Authorization: Basic {basic}"
            self.secrets += [github_token, basic]
        for index, (key, value) in enumerate(config.items()):
            self.env[f"GIT_CONFIG_KEY_{index}"] = key
            self.env[f"GIT_CONFIG_VALUE_{index}"] = value
        self.env["GIT_CONFIG_COUNT"] = str(len(config))

    async def run(self, *arguments: str, quiet: bool = False) -> str:
        process = await asyncio.create_subprocess_exec(
            "git",
            *arguments,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        output: list[str] = []
        try:
            async with asyncio.timeout(GIT_TIMEOUT_SECONDS):
                async for raw in process.stdout:
                    line = self._redacted(raw.decode(errors="replace").rstrip())
                    output.append(line)
                    if line and not quiet:
                        await self.log(line)
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SourceError(
                f"git {arguments[0]} took longer than {GIT_TIMEOUT_SECONDS} s: check that the "
                "repository is reachable from Digi"
            ) from None
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if code != 0:
            last = "\n".join(output[-10:])
            raise SourceError(
                f"git {arguments[0]} failed (exit {code}): check the repository URL, branch "
                f"and commit, and that Digi may read the repository\n{last}"
            )
        return "\n".join(output)

    def _redacted(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line

"""Source to image: a Git checkout or an uploaded tarball, built by the first builder that
can build it, into the deployment's pinned tag; every line of output goes to the deployment's
log and live to the job's subscribers."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from digi_core import runtime, uploads
from digi_core.deploys.deployment_log import BuildOutput
from digi_core.deploys.shared import Deps
from digi_core.models import Component, ComponentType, Deployment
from digi_core.providers import Builder, Host
from digi_core.sources import git_checkout

BUILT = {ComponentType.GITHUB, ComponentType.UPLOAD}

Say = Callable[[Deployment, str], Awaitable[None]]


async def build_image(
    deps: Deps, host: Host, component: Component, row: Deployment, tag: str, say: Say
) -> str:
    workdir = deps.settings.data_dir / "builds" / str(row.id)
    output = BuildOutput(deps.bus, row, component.name, deps.settings.deploy_log_lines)

    async def say_in_order(row: Deployment, message: str) -> None:
        await output.flush()  # the output before the step, in the log as on the screen
        await say(row, message)

    try:
        async with output:
            if component.type is ComponentType.GITHUB:
                await say_in_order(row, f"cloning {component.repo_url}")
                token = deps.settings.github_token
                checkout = await git_checkout(
                    component.repo_url or "",
                    component.branch,
                    component.commit,
                    workdir / "source",
                    output.line,
                    github_token=token.get_secret_value() if token else None,
                )
                row.commit_sha = checkout.commit_sha
                tree, label = checkout.path, checkout.commit_sha[:12]
            else:
                tree, label = await _unpacked_upload(component, row, workdir / "source")
            return await _build(
                deps, host, component, row, tree, tag, label, say_in_order, output.line
            )
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _unpacked_upload(component: Component, row: Deployment, into: Path) -> tuple[Path, str]:
    archive = component.settings.get("upload")
    if not isinstance(archive, str):
        raise runtime.RuntimeFailure(
            f"no source was uploaded for {component.name} yet: upload one first (digi up)"
        )
    row.source_path = archive
    return await asyncio.to_thread(uploads.unpack, Path(archive), into), "the upload"


async def _build(
    deps: Deps,
    host: Host,
    component: Component,
    row: Deployment,
    tree: Path,
    tag: str,
    label: str,
    say: Say,
    log_line: Callable[[str], Awaitable[None]],
) -> str:
    reasons = []
    for builder in deps.registry.providers(Builder).values():
        reason = await builder.can_build(tree, component.dockerfile)
        if reason is None:
            await say(row, f"building {label} with {builder.name}")
            result = await builder.build(host, tree, tag, log_line, component.dockerfile)
            await say(
                row,
                f"built {label}: {result.cached_steps} of {result.total_steps} steps "
                "from the cache",
            )
            return tag
        reasons.append(f"{builder.name}: {reason}")
    if not reasons:
        raise runtime.RuntimeFailure(
            "no builder is loaded: load the bundled railpack plugin (it brings the "
            "Dockerfile builder) through DIGI_LOAD_PLUGINS"
        )
    raise runtime.RuntimeFailure(f"no builder can build this source ({'; '.join(reasons)})")

"""Build and stack bench: cold and warm builds of one Dockerfile app deployed from Git, the share
of layers the warm build takes from the cache, and the time to a running app + PostgreSQL +
Redis stack. How to run it and what it does: ``bench/README.md``. The server and the client come
from ``deploy_setup.py``; the repositories and the images from ``builds_setup.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiodocker
import aiohttp
import click
from builds_setup import (
    DATABASE_IMAGES,
    STACK,
    STACK_ANSWER,
    STACK_COMPONENTS,
    Repositories,
    app_component,
    app_files,
    ensure_stack_images,
    git_daemon,
)
from deploy import BACKENDS, first_answer, settle
from deploy_profile import figures_table, milliseconds
from deploy_setup import (
    Api,
    BenchError,
    JobEvent,
    Service,
    clients,
    console,
    digi_server,
    digi_settings,
    ensure_images,
    remove_service,
    seed_user,
)
from rich.markup import escape

from digi_core.config import load_settings

TARGET_WARM_SHARE = 0.25
"""A warm build's time, at most this share of a cold one's (medians)."""
TARGET_REUSED = 0.90
"""The share of a warm build's steps that come from the cache, at least."""
STACK_TIMEOUT_SECONDS = 180.0
BUILT = re.compile(r"^built \S+: (\d+) of (\d+) steps from the cache$")
PARTS = ("all", "builds", "stack")
COLUMNS = ("measure", "median", "min", "max")


@dataclass
class BuildRun:
    seconds: float
    """From sending deployService to the RUNNING event of the app's deployment."""
    cached: int
    steps: int


@dataclass
class StackRun:
    seconds: float
    """From sending deployService to the app's answer through Caddy."""
    running: dict[str, float]
    """When each component's deployment said RUNNING, from the same start."""


@dataclass
class Results:
    backend: str
    cold: list[BuildRun] = field(default_factory=list)
    warm: list[BuildRun] = field(default_factory=list)
    stack: list[StackRun] = field(default_factory=list)


async def failure(api: Api, service: Service, events: list[JobEvent]) -> BenchError:
    """Why a deploy did not end RUNNING: each deployment's status and error."""
    final = {event.component: event for event in events}
    latest = await api.latest_deployment(service)
    said = "; ".join(f"{name} {event.status}: {event.message}" for name, event in final.items())
    return BenchError(f"the deploy did not go live ({said}); latest: {latest['error']}")


# --- builds -----------------------------------------------------------------------------------


async def build_once(api: Api, docker: aiodocker.Docker, service: Service) -> BuildRun:
    """Deploy the app's component and follow its job until it is final."""
    start = time.perf_counter()
    job_id, [deployment] = await api.deploy_job(service)
    events = [event async for event in api.job_events(job_id, start)]
    running = [event.seconds for event in events if event.status == "RUNNING"]
    if not running:
        raise await failure(api, service, events)
    built = [found for event in events if (found := BUILT.match(event.message))]
    if not built:
        raise BenchError(f"deployment {deployment} went live without saying what it built")
    cached, steps = (int(figure) for figure in built[-1].groups())
    # Untimed: the old container's drain ends before the next run starts.
    await settle(api, docker, service, deployment)
    return BuildRun(running[0], cached, steps)


async def bench_builds(
    api: Api,
    docker: aiodocker.Docker,
    repositories: Repositories,
    results: Results,
    runs: int,
    steps: int,
    step_seconds: float,
) -> None:
    """One service; each run points it at a new repository (a cold build: its first step is
    new), then deploys the same commit again (warm). Both are redeploys: the first deploy,
    which makes the network and the route, is the uncounted warm-up."""

    async def new_source(run: str) -> str:
        nonce = secrets.token_hex(8)
        return await repositories.make(f"app-{run}-{nonce}", app_files(nonce, steps, step_seconds))

    service = await api.create_service("builds", app_component(await new_source("warm-up")))
    try:
        warm_up = await build_once(api, docker, service)
        console.print(f"warm-up: first deploy {milliseconds(warm_up.seconds)} ms", style="dim")
        for run in range(1, runs + 1):
            await api.update_components(service, app_component(await new_source(str(run))))
            cold = await build_once(api, docker, service)
            warm = await build_once(api, docker, service)
            results.cold.append(cold)
            results.warm.append(warm)
            console.print(
                f"build run {run}: cold {milliseconds(cold.seconds)} ms "
                f"({cold.cached} of {cold.steps} steps cached), warm "
                f"{milliseconds(warm.seconds)} ms ({warm.cached} of {warm.steps} steps cached)"
            )
        await api.delete_service(service)
    finally:
        await remove_service(docker, service)


# --- the stack --------------------------------------------------------------------------------


async def stack_once(
    api: Api,
    docker: aiodocker.Docker,
    poller: aiohttp.ClientSession,
    http_port: int,
    poll_seconds: float,
) -> StackRun:
    """A new app + postgres + redis service (so both databases initialise), deployed until
    the app answers through Caddy with what it wrote to both; deleted afterwards."""
    service = await api.create_service("stack", STACK)
    try:
        start = time.perf_counter()
        job_id, _ = await api.deploy_job(service)

        async def follow() -> list[JobEvent]:
            return [event async for event in api.job_events(job_id, start)]

        watcher = asyncio.create_task(follow())
        answered = asyncio.create_task(
            first_answer(
                poller,
                f"http://127.0.0.1:{http_port}/",
                STACK_ANSWER,
                poll_seconds,
                service.hostname,
                within=STACK_TIMEOUT_SECONDS,
            )
        )
        try:
            await asyncio.wait({watcher, answered}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not answered.done():
                events = watcher.result()
                live = {event.component for event in events if event.status == "RUNNING"}
                if live != set(STACK_COMPONENTS):
                    raise await failure(api, service, events)
            await answered
            seconds = time.perf_counter() - start
            events = await asyncio.wait_for(watcher, STACK_TIMEOUT_SECONDS)
        finally:
            for task in (watcher, answered):
                task.cancel()
            await asyncio.gather(watcher, answered, return_exceptions=True)
        running: dict[str, float] = {}
        for event in events:
            if event.status == "RUNNING":
                running.setdefault(event.component, event.seconds)
        await api.delete_service(service)
        return StackRun(seconds, running)
    finally:
        await remove_service(docker, service)


# --- the bench --------------------------------------------------------------------------------


async def bench(
    backend: str, part: str, runs: int, steps: int, step_seconds: float, poll_seconds: float
) -> Results:
    docker = aiodocker.Docker()
    results = Results(backend)
    try:
        await ensure_images(docker)
        if part in ("all", "stack"):
            await ensure_stack_images(docker)
        with tempfile.TemporaryDirectory(prefix="digi-bench-builds-") as directory:
            workdir = Path(directory)
            (workdir / "repos").mkdir()
            async with (
                digi_settings(backend, workdir) as values,
                contextlib.AsyncExitStack() as stack,
            ):
                # The Dockerfile builder comes with the railpack plugin.
                values |= {"DIGI_LOAD_PLUGINS": "local,caddy,railpack", **DATABASE_IMAGES}
                settings = load_settings(**values)
                token = await seed_user(settings)
                repositories = await stack.enter_async_context(git_daemon(workdir / "repos"))
                api_url = await stack.enter_async_context(digi_server(values, workdir, None))
                api, poller = await clients(stack, api_url, token)
                if part in ("all", "builds"):
                    await bench_builds(
                        api, docker, repositories, results, runs, steps, step_seconds
                    )
                if part in ("all", "stack"):
                    http_port = int(values["DIGI_HTTP_PORT"])
                    for run in range(1, runs + 1):
                        stack_run = await stack_once(api, docker, poller, http_port, poll_seconds)
                        results.stack.append(stack_run)
                        console.print(
                            f"stack run {run}: answered after {milliseconds(stack_run.seconds)} ms"
                        )
    finally:
        await docker.close()
    return results


def _row(name: str, values: list[float]) -> tuple[str, ...]:
    figures = (statistics.median(values), min(values), max(values))
    return (name, *map(milliseconds, figures))


def _verdict(met: bool) -> str:
    return "[green]met[/]" if met else "[red]missed[/]"


def report(results: Results) -> str:
    """Print the tables and the targets; return the one-line summary."""
    summary = [f"build bench ({results.backend})"]
    if results.cold:
        runs = len(results.cold)
        table = figures_table(f"builds, {results.backend}, {runs} runs (ms)", COLUMNS, "measure")
        cold = statistics.median(run.seconds for run in results.cold)
        warm = statistics.median(run.seconds for run in results.warm)
        table.add_row(*_row("cold: deployService -> RUNNING", [r.seconds for r in results.cold]))
        table.add_row(*_row("warm: deployService -> RUNNING", [r.seconds for r in results.warm]))
        console.print(table)
        share = warm / cold
        reused = sum(run.cached for run in results.warm)
        steps = sum(run.steps for run in results.warm)
        cold_cached = sum(run.cached for run in results.cold)
        console.print(
            f"warm / cold (medians): {share:.0%} (target <= {TARGET_WARM_SHARE:.0%}, "
            f"{_verdict(share <= TARGET_WARM_SHARE)})\n"
            f"warm builds' steps from the cache: {reused} of {steps} = {reused / steps:.0%} "
            f"(target >= {TARGET_REUSED:.0%}, {_verdict(reused / steps >= TARGET_REUSED)}); "
            f"cold builds': {cold_cached} of {sum(run.steps for run in results.cold)}"
        )
        summary.append(
            f"{runs} runs: cold median {milliseconds(cold)} ms, warm median "
            f"{milliseconds(warm)} ms, warm/cold {share:.0%} (target <= {TARGET_WARM_SHARE:.0%}), "
            f"warm steps from the cache {reused}/{steps} = {reused / steps:.0%} "
            f"(target >= {TARGET_REUSED:.0%}), cold {cold_cached} cached"
        )
    if results.stack:
        runs = len(results.stack)
        table = figures_table(
            f"app + postgres + redis, {results.backend}, {runs} runs (ms)",
            COLUMNS,
            "measure",
        )
        seconds = [run.seconds for run in results.stack]
        table.add_row(*_row(f"deployService -> {STACK_ANSWER!r} via Caddy", seconds))
        running = {
            component: [run.running[component] for run in results.stack]
            for component in STACK_COMPONENTS
        }
        for component, times in sorted(running.items(), key=lambda item: min(item[1])):
            table.add_row(*_row(f"  {component} RUNNING", times))
        console.print(table)
        summary.append(f"stack median {milliseconds(statistics.median(seconds))} ms ({runs} runs)")
    return "; ".join(summary)


@click.command()
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="sqlite", show_default=True)
@click.option("--only", "part", type=click.Choice(PARTS), default="all", show_default=True)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Slow RUN steps in the app's Dockerfile (it has three quick steps more).",
)
@click.option(
    "--step-seconds",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="How long each slow RUN step sleeps: the work a warm build skips.",
)
@click.option("--poll-ms", type=click.FloatRange(min=1), default=20, show_default=True)
def main(
    runs: int, backend: str, part: str, steps: int, step_seconds: float, poll_ms: float
) -> None:
    """Time cold and warm builds from Git and an app + postgres + redis stack's first answer."""
    try:
        results = asyncio.run(bench(backend, part, runs, steps, step_seconds, poll_ms / 1000))
    except BenchError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        sys.exit(1)
    console.print(report(results), markup=False, soft_wrap=True)


if __name__ == "__main__":
    main()

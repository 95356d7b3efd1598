"""Deploy latency bench: ``deployService`` until the new container answers through Caddy,
beside the floor (aiodocker create + start + first answer of the same image) measured in the
same run. How to run it and what it does: ``bench/README.md``. The server, its settings and
the test image come from ``deploy_setup.py``; ``--profile`` lives in ``deploy_profile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import click
from deploy_profile import Span, figures_table, milliseconds, profile_tables, read_spans
from deploy_setup import (
    APP_IMAGE,
    APP_PORT,
    Api,
    BenchError,
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

from digi_core import runtime
from digi_core.config import Settings, load_settings

BACKENDS = ("sqlite", "postgres+redis")
TARGET_RATIO = 1.5
ANSWER_TIMEOUT_SECONDS = 60.0
SETTLE_TIMEOUT_SECONDS = 60.0
FINAL_STATUSES = {"RUNNING", "FAILED", "CANCELLED", "SUPERSEDED", "STOPPED"}
FLOOR_STEPS = ("create", "start", "inspect", "first answer")


# --- Digi's runs ------------------------------------------------------------------------------


@dataclass
class DigiRun:
    seconds: float
    mutation_seconds: float
    started_at: float
    """Wall clock (the server's probes use the same clock) just before the mutation."""
    answered_at: float


@dataclass
class FloorRun:
    seconds: float
    steps: dict[str, float]


async def first_answer(
    session: aiohttp.ClientSession,
    url: str,
    expected: str,
    poll_seconds: float,
    host: str | None = None,
    within: float = ANSWER_TIMEOUT_SECONDS,
) -> None:
    """Poll ``url`` until it answers 200 with ``expected``; a fresh connection each time,
    as a new visitor makes, so no keep-alive connection pins an old route or server."""
    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + within
    last = "nothing"
    while True:
        try:
            async with session.get(url, headers=headers) as response:
                text = (await response.text()).strip()
                if response.status == 200 and text == expected:
                    return
                last = f"{response.status} {text[:80]!r}"
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            last = repr(error)
        if time.monotonic() > deadline:
            raise BenchError(f"{url} never answered {expected!r}; last: {last}")
        await asyncio.sleep(poll_seconds)


async def settle(api: Api, docker: aiodocker.Docker, service: Service, deployment: str) -> None:
    """Wait, untimed, until the deploy finished and the old container is gone (after Digi's
    drain), so that no run overlaps the previous one's retirement."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    label = {"label": [f"{runtime.LABEL_SERVICE}={service.slug}"]}
    while time.monotonic() < deadline:
        latest = await api.latest_deployment(service)
        if latest["id"] == deployment and latest["status"] in FINAL_STATUSES:
            if latest["status"] != "RUNNING":
                raise BenchError(
                    f"deployment {deployment} ended {latest['status']}: {latest['error']}"
                )
            if len(await docker.containers.list(all=True, filters=label)) == 1:
                return
        await asyncio.sleep(0.1)
    raise BenchError(f"deployment {deployment} did not settle within {SETTLE_TIMEOUT_SECONDS:g} s")


async def measure_digi(
    api: Api,
    docker: aiodocker.Docker,
    poller: aiohttp.ClientSession,
    service: Service,
    http_port: int,
    marker: str,
    poll_seconds: float,
) -> DigiRun:
    await api.set_marker(service, marker)
    started_at = time.time()
    start = time.perf_counter()
    deployment = await api.deploy(service)
    mutation_seconds = time.perf_counter() - start
    url = f"http://127.0.0.1:{http_port}/"
    try:
        await first_answer(poller, url, f"hello from {marker}", poll_seconds, service.hostname)
    except BenchError as error:
        latest = await api.latest_deployment(service)
        raise BenchError(
            f"{error}\ndeployment {latest['id']}: {latest['status']} {latest['error'] or ''}"
        ) from None
    seconds = time.perf_counter() - start
    answered_at = time.time()
    await settle(api, docker, service, deployment)
    return DigiRun(seconds, mutation_seconds, started_at, answered_at)


# --- the floor's runs -------------------------------------------------------------------------


def floor_config(settings: Settings, network: str, marker: str, label: str) -> dict[str, Any]:
    """What Digi's runtime asks of Docker for a free-plan container (runtime.run_container),
    minus Digi's own labels: the floor pays for the same init and limits."""
    return {
        "Image": APP_IMAGE,
        "Env": [f"COMPONENT={marker}", f"PORT={APP_PORT}"],
        "Labels": {"digi.bench": label},
        "HostConfig": {
            "Init": True,
            "RestartPolicy": {"Name": "no"},
            "NetworkMode": network,
            "Memory": settings.free_memory_mb * 1024 * 1024,
            "NanoCpus": int(settings.free_cpus * 1e9),
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["web"]}}},
    }


async def measure_floor(
    docker: aiodocker.Docker,
    poller: aiohttp.ClientSession,
    config: dict[str, Any],
    network: str,
    marker: str,
    poll_seconds: float,
) -> FloorRun:
    marks = [time.perf_counter()]  # one more after each of FLOOR_STEPS
    container = await docker.containers.create(config, name=f"digi-bench-floor-{marker}")
    try:
        marks.append(time.perf_counter())
        await container.start()
        marks.append(time.perf_counter())
        details = await container.show()
        address = details["NetworkSettings"]["Networks"][network]["IPAddress"]
        marks.append(time.perf_counter())
        url = f"http://{address}:{APP_PORT}/"
        await first_answer(poller, url, f"hello from {marker}", poll_seconds)
        marks.append(time.perf_counter())
    finally:
        await container.delete(force=True)
    steps = zip(FLOOR_STEPS, marks, marks[1:], strict=False)
    return FloorRun(marks[-1] - marks[0], {name: end - begin for name, begin, end in steps})


async def remove_floor(docker: aiodocker.Docker, label: str, network: str) -> None:
    with contextlib.suppress(aiodocker.DockerError):
        for container in await docker.containers.list(
            all=True, filters={"label": [f"digi.bench={label}"]}
        ):
            await container.delete(force=True)
        await (await docker.networks.get(network)).delete()


# --- the bench --------------------------------------------------------------------------------


@dataclass
class Results:
    backend: str
    digi: list[DigiRun] = field(default_factory=list)
    floor: list[FloorRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Iterations that failed and were measured again, with why."""


async def bench(
    backend: str, runs: int, warmup: int, poll_seconds: float, profile: bool, max_failures: int
) -> tuple[Results, list[Span]]:
    docker = aiodocker.Docker()
    label = secrets.token_hex(6)
    floor_network = f"digi-bench-floor-{label}"
    service: Service | None = None
    results = Results(backend)
    spans: list[Span] = []
    try:
        await ensure_images(docker)
        with tempfile.TemporaryDirectory(prefix="digi-bench-") as directory:
            workdir = Path(directory)
            probes = workdir / "probes.jsonl" if profile else None
            async with (
                digi_settings(backend, workdir) as values,
                contextlib.AsyncExitStack() as stack,
            ):
                settings = load_settings(**values)
                token = await seed_user(settings)
                api_url = await stack.enter_async_context(digi_server(values, workdir, probes))
                api, poller = await clients(stack, api_url, token)
                service = await api.create_service()
                await docker.networks.create(
                    {"Name": floor_network, "Driver": "bridge", "Labels": {"digi.bench": label}}
                )
                config_for = functools.partial(floor_config, settings, floor_network)
                # Digi's redeploy starts beside the old container, so its network's bridge is
                # up; a floor network left empty between runs pays for bringing it up again
                # (hundreds of ms here). One idle container keeps the floor's up too.
                anchor = await docker.containers.create(
                    config_for("anchor", label), name=f"digi-bench-floor-anchor-{label}"
                )
                await anchor.start()
                http_port = int(values["DIGI_HTTP_PORT"])

                async def digi_once(marker: str) -> DigiRun:
                    assert service is not None
                    return await measure_digi(
                        api, docker, poller, service, http_port, marker, poll_seconds
                    )

                async def floor_once(marker: str) -> FloorRun:
                    config = config_for(marker, label)
                    return await measure_floor(
                        docker, poller, config, floor_network, marker, poll_seconds
                    )

                # The first deploy creates the network and the route: a redeploy is measured.
                await digi_once("initial")
                iteration = 0
                while len(results.digi) < runs:
                    marker = f"run-{iteration}"
                    iteration += 1
                    try:
                        if iteration % 2:
                            digi_run = await digi_once(marker)
                            floor_run = await floor_once(marker)
                        else:
                            floor_run = await floor_once(marker)
                            digi_run = await digi_once(marker)
                    except BenchError as error:
                        # Measure it again: a busy or shared engine can disturb one iteration.
                        results.failures.append(str(error))
                        console.print(
                            f"[yellow]iteration {iteration} failed, not counted "
                            f"({len(results.failures)} of at most {max_failures}):[/] "
                            f"{escape(str(error))}"
                        )
                        if len(results.failures) > max_failures:
                            raise
                        continue
                    counted = iteration > warmup
                    if counted:
                        results.digi.append(digi_run)
                        results.floor.append(floor_run)
                    console.print(
                        f"{f'run {len(results.digi)}' if counted else 'warm-up'}: Digi "
                        f"{milliseconds(digi_run.seconds)} ms, "
                        f"floor {milliseconds(floor_run.seconds)} ms",
                        style=None if counted else "dim",
                    )
            if probes is not None:
                spans = read_spans(probes)
    finally:
        await remove_floor(docker, label, floor_network)
        if service is not None:
            await remove_service(docker, service)
        await docker.close()
    return results, spans


def report(results: Results, runs: int, poll_seconds: float) -> str:
    """Print the table and the ratio; return the one-line summary."""

    def p90(values: list[float]) -> float:
        if len(values) < 2:
            return values[0]
        return statistics.quantiles(values, n=10, method="inclusive")[-1]

    digi = [run.seconds for run in results.digi]
    floor = [run.seconds for run in results.floor]
    ratio = statistics.median(digi) / statistics.median(floor)
    paired = statistics.median(d / f for d, f in zip(digi, floor, strict=True))
    table = figures_table(
        f"deploy latency, {results.backend}, {runs} runs (ms)",
        ("measure", "median", "p90", "min", "max"),
        "measure",
    )
    rows = [
        ("Digi: deployService -> new body via Caddy", digi),
        ("  of which the mutation's answer", [run.mutation_seconds for run in results.digi]),
        ("floor: create + start + first answer", floor),
    ]
    rows += [
        (f"  floor {step}", [run.steps[step] for run in results.floor]) for step in FLOOR_STEPS
    ]
    for name, values in rows:
        figures = (statistics.median(values), p90(values), min(values), max(values))
        table.add_row(name, *map(milliseconds, figures))
    console.print(table)
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    colour = "green" if ratio <= TARGET_RATIO else "red"
    console.print(
        f"ratio Digi/floor (medians): [{colour}]{ratio:.2f}x[/] (target <= {TARGET_RATIO}x, "
        f"{verdict}); median of per-iteration ratios {paired:.2f}x; polling every "
        f"{poll_seconds * 1000:g} ms"
    )
    disturbed = f", {len(results.failures)} failed iteration(s) re-run" if results.failures else ""
    return (
        f"deploy bench ({results.backend}, {runs} runs{disturbed}): Digi median "
        f"{milliseconds(statistics.median(digi))} ms (p90 {milliseconds(p90(digi))}), floor "
        f"median {milliseconds(statistics.median(floor))} ms (p90 {milliseconds(p90(floor))}), "
        f"ratio {ratio:.2f}x, target <= {TARGET_RATIO}x {verdict}"
    )


@click.command()
@click.option("--runs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="sqlite", show_default=True)
@click.option(
    "--poll-ms",
    type=click.FloatRange(min=1),
    default=20,
    show_default=True,
    help="How often both pollers ask for the new body. Much faster polling slows Digi's "
    "deploy (see bench/README.md).",
)
@click.option(
    "--max-failures",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Failed iterations to report and measure again before giving up.",
)
@click.option("--profile", is_flag=True, help="Probe the server and show where the time goes.")
def main(
    runs: int, warmup: int, backend: str, poll_ms: float, max_failures: int, profile: bool
) -> None:
    """Time deployService against the floor of creating and starting the same container."""
    poll_seconds = poll_ms / 1000
    try:
        results, spans = asyncio.run(
            bench(backend, runs, warmup, poll_seconds, profile, max_failures)
        )
    except BenchError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        sys.exit(1)
    summary = report(results, runs, poll_seconds)
    if profile:
        for table in profile_tables(results, spans):
            console.print(table)
    console.print(summary, markup=False)


if __name__ == "__main__":
    main()

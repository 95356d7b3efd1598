"""The deploy bench's ``--profile``: timing probes in the server, and where a deploy's time goes.

``deploy.py`` runs this file as its server child (``SERVE_COMMAND``): ``digi server`` with
probes that append one JSON span per call to the file named by ``DIGI_BENCH_PROBES``. The
parent reads the spans back (``read_spans``) and reports them (``profile_tables``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from deploy import DigiRun, Results

PROBES_VARIABLE = "DIGI_BENCH_PROBES"
SERVE_COMMAND = (sys.executable, str(Path(__file__).resolve()))

Span = tuple[str, float, float]
"""A probed call: its name, and when it started and ended (wall clock, seconds)."""

PIPELINE_METHODS = (
    *("run_job", "deploy_component", "_advance", "_say", "_image", "_env"),
    *("_start_container", "_wait_healthy", "_running", "_route", "_retire", "_finished_hook"),
)
RUNTIME_FUNCTIONS = (
    *("ensure_image", "pin_image", "ensure_network", "stop_and_remove", "run_container"),
    *("wait_healthy", "_answers", "address_on_network", "keep_running"),
)
DB_METHODS = ("execute_query", "execute_query_dict", "execute_insert")
_ID_IN_PATH = re.compile(r"(containers|networks|images)/[^/]+")
_ROUTE_IN_PATH = re.compile(r"/id/[^/]+")


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


# --- in the server child -------------------------------------------------------------------


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> str:
    return str(args[index] if len(args) > index else kwargs.get(name, "?"))


def _docker_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    path = _argument(args, kwargs, 1, "path").split("?")[0]
    if not path.endswith("containers/create"):
        path = _ID_IN_PATH.sub(r"\1/{id}", path)
    return f"docker {_argument(args, kwargs, 2, 'method')} {path}"


def _caddy_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    path = _ROUTE_IN_PATH.sub("/id/{route}", _argument(args, kwargs, 3, "path"))
    return f"caddy {_argument(args, kwargs, 2, 'method')} {path}"


def _db_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"db {_argument(args, kwargs, 1, 'query').split(None, 1)[0].upper()}"


def install_probes(path: Path) -> None:
    """Wrap the deploy's steps and its Docker, Caddy and database calls so that each call
    writes a span to ``path``. The pipeline looks these names up at call time, so patching the
    module and class attributes catches every call."""
    import aiodocker
    from tortoise.backends.asyncpg.client import AsyncpgDBClient
    from tortoise.backends.sqlite.client import SqliteClient

    from digi_caddy.router import CaddyRouter
    from digi_core import runtime
    from digi_core.deploys.pipeline import DeployRunner
    from digi_local.compute import LocalCompute

    sink = path.open("a", buffering=1)

    def probe(owner: Any, attribute: str, name: Callable[..., str] | str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        async def probed(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return await original(*args, **kwargs)
            finally:
                try:
                    label = name(args, kwargs) if callable(name) else name
                except Exception:  # a probe must never break what it measures
                    label = f"{attribute} (unnamed)"
                sink.write(json.dumps([label, start, time.time()]) + "\n")

        setattr(owner, attribute, probed)

    for method in PIPELINE_METHODS:
        probe(DeployRunner, method, f"pipeline.{method.lstrip('_')}")
    for function in RUNTIME_FUNCTIONS:
        probe(runtime, function, f"runtime.{function.lstrip('_')}")
    probe(LocalCompute, "host_for_service", "compute.host_for_service")
    probe(CaddyRouter, "set_routes", "router.set_routes")
    probe(CaddyRouter, "_admin", _caddy_name)
    probe(aiodocker.Docker, "_do_query", _docker_name)
    for client in (SqliteClient, AsyncpgDBClient):
        for method in DB_METHODS:
            probe(client, method, _db_name)


def serve_probed() -> None:
    """``digi server``, with the probes installed before its app starts."""
    from digi_core.cli import main

    install_probes(Path(os.environ[PROBES_VARIABLE]))
    sys.argv = ["digi", "server"]
    main()


# --- in the bench, afterwards ---------------------------------------------------------------


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [
        (str(name), float(start), float(end))
        for name, start, end in map(json.loads, path.read_text().splitlines())
    ]


def spans_of(run: DigiRun, spans: list[Span]) -> list[Span]:
    return sorted(
        (span for span in spans if run.started_at <= span[1] and span[2] <= run.answered_at + 2),
        key=lambda span: span[1],
    )


CRITICAL_PATH = (
    ("API, queue: until the worker takes the job", None, "start pipeline.run_job"),
    ("worker: claim, image pin, statuses", "start pipeline.run_job", "start docker create"),
    ("Docker: create + start (as Digi calls it)", "start docker create", "end docker start"),
    ("worker: row update, health check", "end docker start", "end pipeline.wait_healthy"),
    ("worker: route switch on Caddy", "end pipeline.wait_healthy", "end pipeline.route"),
    ("Caddy: until the client saw the new body", "end pipeline.route", None),
)
_SHORT_NAMES = {
    "docker POST containers/create": "docker create",
    "docker POST containers/{id}/start": "docker start",
}


def _milestones(run: DigiRun, spans: list[Span]) -> dict[str, float]:
    """When each step of the critical path happened in ``run``, seconds after its start."""
    found: dict[str, float] = {}
    for name, start, end in spans_of(run, spans):
        name = _SHORT_NAMES.get(name, name)
        found.setdefault(f"start {name}", start - run.started_at)
        found.setdefault(f"end {name}", end - run.started_at)
    return found


def figures_table(title: str, columns: tuple[str, ...], names: str) -> Table:
    """A table of figures (right-aligned) whose ``names`` column is left-aligned."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == names else "right")
    return table


def critical_path(results: Results, spans: list[Span]) -> Table:
    """The deploy's steps one after the other (medians per step over the runs), beside the
    floor's; a step whose probes are missing in a run is left out of that run."""
    table = figures_table("critical path (median ms per step)", ("step", "Digi", "floor"), "step")
    floor_docker = [run.steps["create"] + run.steps["start"] for run in results.floor]
    floor_rest = [
        run.seconds - docker for run, docker in zip(results.floor, floor_docker, strict=True)
    ]
    milestones = [_milestones(run, spans) for run in results.digi]
    for label, begin, finish in CRITICAL_PATH:
        durations = []
        for run, times in zip(results.digi, milestones, strict=True):
            start = 0.0 if begin is None else times.get(begin)
            end = run.answered_at - run.started_at if finish is None else times.get(finish)
            if start is not None and end is not None:
                durations.append(end - start)
        floor = ""
        if label.startswith("Docker"):
            floor = milliseconds(statistics.median(floor_docker))
        elif label.startswith("Caddy"):
            floor = f"{milliseconds(statistics.median(floor_rest))} (inspect, first answer)"
        shown = milliseconds(statistics.median(durations)) if durations else "-"
        table.add_row(label, shown, floor)
    # Docker's create + start varies by hundreds of ms from call to call on a busy machine;
    # what the platform adds is the rest, steadier, and what a change to Digi can shrink.
    outside = [
        run.seconds - (times["end docker start"] - times["start docker create"])
        for run, times in zip(results.digi, milestones, strict=True)
        if "start docker create" in times and "end docker start" in times
    ]
    if outside:
        table.add_row(
            "total outside Docker create + start",
            milliseconds(statistics.median(outside)),
            milliseconds(statistics.median(floor_rest)),
            style="bold",
        )
    return table


def profile_tables(results: Results, spans: list[Span]) -> list[Table]:
    """Per probe name: calls and time per run (medians), in the order they first start; the
    run nearest the median as a waterfall; the critical path."""
    totals: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, list[int]] = defaultdict(list)
    first_start: dict[str, list[float]] = defaultdict(list)
    for run in results.digi:
        per_name: dict[str, list[Span]] = defaultdict(list)
        for span in spans_of(run, spans):
            if span[1] <= run.answered_at:
                per_name[span[0]].append(span)
        for name, named in per_name.items():
            totals[name].append(sum(end - start for _, start, end in named))
            calls[name].append(len(named))
            first_start[name].append(named[0][1] - run.started_at)
    probes = figures_table(
        "where a deploy's time goes (probes; median per run, until answered)",
        ("probe", "runs", "first start +ms", "calls", "total ms"),
        "probe",
    )
    # A probe seen in only some runs (one that starts about when the answer comes) shows its
    # medians over those runs.
    for name in sorted(totals, key=lambda name: statistics.median(first_start[name])):
        probes.add_row(
            name,
            str(len(totals[name])),
            milliseconds(statistics.median(first_start[name])),
            f"{statistics.median(calls[name]):g}",
            f"{statistics.median(totals[name]) * 1000:.1f}",
        )
    typical = sorted(results.digi, key=lambda run: run.seconds)[len(results.digi) // 2]
    waterfall = figures_table(
        f"one run near the median ({milliseconds(typical.seconds)} ms): spans until answered",
        ("+ms", "ms", "probe"),
        "probe",
    )
    open_ends: list[float] = []
    for name, start, end in spans_of(typical, spans):
        if start > typical.answered_at:
            break
        while open_ends and open_ends[-1] <= start:
            open_ends.pop()
        waterfall.add_row(
            milliseconds(start - typical.started_at),
            f"{(end - start) * 1000:.1f}",
            "  " * len(open_ends) + name,
        )
        open_ends.append(end)
    answered = milliseconds(typical.answered_at - typical.started_at)
    waterfall.add_row(answered, "", "the new body answered")
    return [probes, waterfall, critical_path(results, spans)]


if __name__ == "__main__":
    serve_probed()

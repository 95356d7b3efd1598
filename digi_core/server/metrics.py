"""``/metrics`` in Prometheus' text format: deployments and services by status from the
database, and what this process's reconciler repaired and its log streams."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from digi_core.models import Deployment, DeploymentStatus, Service, ServiceStatus
from digi_core.server.keys import LOG_FOLLOWERS, WORKER


async def metrics(request: web.Request) -> web.Response:
    # A registry per scrape: the values come from the database and this process's worker,
    # so nothing global outlives an app (tests run many).
    registry = CollectorRegistry()
    deployments = Gauge("digi_deployments", "Deployments by status", ["status"], registry=registry)
    counts = await _count_by_status(Deployment.all())
    for status in DeploymentStatus:
        deployments.labels(status.value).set(counts.get(status.value, 0))
    service_gauge = Gauge("digi_services", "Live services by status", ["status"], registry=registry)
    counts = await _count_by_status(Service.filter(deleted_at__isnull=True))
    for service_status in ServiceStatus:
        service_gauge.labels(service_status.value).set(counts.get(service_status.value, 0))
    followers = request.app.get(LOG_FOLLOWERS)
    if followers is not None:
        Gauge("digi_log_streams", "Docker log streams this process follows", registry=registry).set(
            followers.active_streams()
        )
    worker = request.app.get(WORKER)
    if worker is not None:
        reconciler = worker.reconciler
        repairs = Counter(
            "digi_reconciler_repairs",
            "Repairs made by this process's reconciler, by kind",
            ["kind"],
            registry=registry,
        )
        for kind, count in reconciler.repairs.items():
            repairs.labels(kind).inc(count)
        Counter(
            "digi_reconciler_passes", "Reconcile passes this process ran", registry=registry
        ).inc(reconciler.passes)
        if reconciler.last_pass_at is not None:
            Gauge(
                "digi_reconciler_last_pass_timestamp_seconds",
                "When this process's reconciler last finished a pass",
                registry=registry,
            ).set(reconciler.last_pass_at)
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _count_by_status(query: QuerySet[Any]) -> dict[str, int]:
    grouped = query.annotate(count=Count("id")).group_by("status")
    return {
        str(status): int(count) for status, count in await grouped.values_list("status", "count")
    }

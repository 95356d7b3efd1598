"""``POST /uploads/{serviceId}/{component}``: a source tarball for an ``upload`` component
(what `digi up` sends); the next deploy of the component builds it."""

from __future__ import annotations

from aiohttp import web

from digi_core import audit, services, uploads
from digi_core.api.context import Context
from digi_core.errors import BadUserInput, DigiError
from digi_core.models import AuditOutcome, ComponentType
from digi_core.server.keys import SETTINGS

CHUNK_BYTES = 64 * 1024


def setup_upload_routes(app: web.Application) -> None:
    app.router.add_post("/uploads/{service_id}/{component}", upload_source)


async def upload_source(request: web.Request) -> web.Response:
    user = await Context(request=request, response=web.Response()).require_user()
    service = await services.service_for(user, request.match_info["service_id"])
    component = await services.component_of(service, request.match_info["component"])
    if component is None or component.type is not ComponentType.UPLOAD:
        raise BadUserInput("uploads go to a component of type upload", field="component")
    into = uploads.upload_dir(request.app[SETTINGS].data_dir, service.slug, component.name)
    try:
        archive = await uploads.receive(request.content.iter_chunked(CHUNK_BYTES), into)
    except DigiError as error:
        await _audited(request, user, service.id, error)
        raise
    component.settings = {**component.settings, "upload": str(archive)}
    await component.save(update_fields=["settings", "updated_at"])
    await _audited(request, user, service.id, None)
    return web.json_response(
        {"upload": archive.name, "component": component.name, "bytes": archive.stat().st_size}
    )


async def _audited(
    request: web.Request, user: object, service_id: int, error: DigiError | None
) -> None:
    await audit.record(
        "uploadSource",
        actor=user,  # type: ignore[arg-type]
        outcome=AuditOutcome.FAILURE if error else AuditOutcome.SUCCESS,
        ip=request.remote,
        target_type="service",
        target_id=service_id,
        metadata={"code": error.code} if error else {},
    )

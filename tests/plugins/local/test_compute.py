"""The local compute provider: one host, this machine's real Docker engine."""

from __future__ import annotations

from pathlib import Path

from digi_core.config import load_settings
from digi_local.compute import LocalCompute
from tests.conftest import TEST_SECRET


async def _no_log(line: str) -> None:
    return None


async def test_every_service_gets_the_local_engine(tmp_path: Path, clean_env: Path) -> None:
    settings = load_settings(
        DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=tmp_path / "data", DIGI_HTTP_PORT=8181
    )
    compute = LocalCompute()
    await compute.start(settings)
    try:
        first = await compute.host_for_service(None, _no_log)  # type: ignore[arg-type]
        again = await compute.host_for_service(None, _no_log)  # type: ignore[arg-type]
        assert first is again
        assert (first.id, first.upstream) == ("local", "127.0.0.1:8181")
        assert first.caddy_admin_url == "http://127.0.0.1:2019"
        assert (await first.docker.version())["ApiVersion"]
        await compute.release_service(None)  # type: ignore[arg-type]  # nothing of its own
        [status] = await compute.hosts()
        assert status.status == "ready"
    finally:
        await compute.close()

"""Source uploads: a tarball deployed with its Dockerfile; hostile tarballs refused whole."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from digi_core import uploads
from digi_core.models import DeploymentStatus
from tests.core.deploys.conftest import Platform
from tests.core.deploys.test_git import DOCKERFILE
from tests.core.deploys.test_pipeline import hostname

UPLOAD = '[{name: "web", type: UPLOAD, port: 8000, healthcheckPath: "/health"}]'


def tarball(members: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            data = (contents or {}).get(member.name)
            if data is not None:
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    member.linkname = target
    return member


def device(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.CHRTYPE
    member.devmajor, member.devminor = 1, 3
    return member


async def upload(platform: Platform, token: str, service: dict[str, Any], body: bytes) -> Any:
    response = await platform.client.post(
        f"/uploads/{service['id']}/web", data=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def test_an_uploaded_tree_is_built_and_served(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    _, stranger = await platform.user("stranger@example.com")
    service = await platform.service(token, "up", UPLOAD)
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.FAILED and "no source was uploaded" in (row.error or "")

    body = tarball(
        [file("Dockerfile"), file("index.html")],
        {"Dockerfile": DOCKERFILE.encode(), "index.html": b"uploaded\n"},
    )
    status, answer = await upload(platform, stranger, service, body)
    assert (status, answer["error"]["code"]) == (404, "NOT_FOUND")
    status, answer = await upload(platform, token, service, body)
    assert status == 200 and answer["component"] == "web"
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status is DeploymentStatus.RUNNING, row.error
    assert row.source_path and row.source_path.endswith(answer["upload"])
    await platform.expect(hostname(service, platform), 200, "uploaded")


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([file("../escape")], "points outside the directory"),
        ([file("/etc/cron.d/evil")], "absolute path"),
        ([link("passwd", "/etc/passwd")], "link that leaves the directory"),
        ([link("up", "../../etc/passwd")], "link that leaves the directory"),
        ([link("hard", "/etc/shadow", hard=True)], "link that leaves the directory"),
        ([device("null")], "device or FIFO"),
    ],
    ids=["dotdot", "absolute", "symlink", "relative-symlink", "hardlink", "device"],
)
async def test_a_hostile_tarball_is_refused_and_not_kept(
    platform: Platform, members: list[tarfile.TarInfo], why: str
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "up", UPLOAD)
    status, answer = await upload(platform, token, service, tarball(members))
    assert status == 400 and why in answer["error"]["message"], answer
    kept = uploads.upload_dir(platform.settings.data_dir, service["slug"], "web")
    assert not list(kept.glob("*"))


async def test_not_a_tarball_and_too_large_are_refused(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "up", UPLOAD)
    status, answer = await upload(platform, token, service, b"just some bytes")
    assert status == 400 and "not a tar" in answer["error"]["message"]
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    status, answer = await upload(platform, token, service, b"x" * 5000)
    assert status == 413 and "larger than" in answer["error"]["message"]


async def test_uploads_are_pruned_and_go_with_their_service(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "up", UPLOAD)
    kept = uploads.upload_dir(platform.settings.data_dir, service["slug"], "web")
    body = tarball([file("index.html")], {"index.html": b"hi\n"})
    for _ in range(uploads.UPLOADS_KEPT + 2):
        assert (await upload(platform, token, service, body))[0] == 200
    assert len(list(kept.glob("*.tar"))) == uploads.UPLOADS_KEPT
    await platform.gql(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "up") { removed } }',
        {"id": service["id"]},
        token=token,
    )
    assert not kept.exists()

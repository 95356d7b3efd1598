"""Source uploads (`digi up`): a tarball of a directory, size-limited, checked member by member
before it is kept, and unpacked only through tarfile's "data" filter.

Refused: paths that escape the tree (``../``, absolute), links pointing outside it, device
files and FIFOs. Each upload is kept under the data directory, so the deployment that used it
can say which one it ran.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from digi_core.errors import BadUserInput, DigiError

MAX_UPLOAD_BYTES = 200 * 2**20
MAX_MEMBERS = 50_000
UPLOADS_KEPT = 5  # per component: the recent ones say what recent deployments ran


class UploadTooLarge(DigiError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413
    exit_code = 2


def upload_dir(data_dir: Path, service_slug: str, component: str) -> Path:
    return data_dir / "uploads" / service_slug / component


async def receive(chunks: AsyncIterator[bytes], into: Path) -> Path:
    """Write the uploaded tarball to a new file in ``into``, refusing it past the limit or
    when it does not pass :func:`check`. File work runs in threads: the loop never blocks."""
    await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
    path = into / f"{secrets.token_hex(8)}.tar"
    archive = await asyncio.to_thread(path.open, "wb")
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise UploadTooLarge(
                    f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB: leave build "
                    "outputs and dependencies out of it"
                )
            await asyncio.to_thread(archive.write, chunk)
        await asyncio.to_thread(archive.close)
        await asyncio.to_thread(check, path)
    except BaseException:
        await asyncio.to_thread(archive.close)
        await asyncio.to_thread(path.unlink, True)
        raise
    await asyncio.to_thread(_prune, into)
    return path


def _prune(into: Path) -> None:
    kept = sorted(into.glob("*.tar"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in kept[UPLOADS_KEPT:]:
        old.unlink(missing_ok=True)


def remove_all(data_dir: Path, service_slug: str) -> None:
    """A deleted service's uploads go with it."""
    shutil.rmtree(data_dir / "uploads" / service_slug, ignore_errors=True)


def check(archive: Path) -> None:
    """Refuse an archive that is not a tarball or that tries to leave its tree."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise BadUserInput(f"the upload has more than {MAX_MEMBERS} files")
            for member in members:
                try:
                    if member.name.startswith("/"):  # the filter would strip it: refuse
                        raise tarfile.AbsolutePathError(member)
                    tarfile.data_filter(member, "/nonexistent-root")
                except tarfile.FilterError as error:
                    raise BadUserInput(
                        f"the upload is refused: {member.name!r} {_why(error)}"
                    ) from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BadUserInput(f"the upload is not a tar or tar.gz archive ({error})") from None


def _why(error: tarfile.FilterError) -> str:
    if isinstance(error, tarfile.AbsolutePathError):
        return "has an absolute path"
    if isinstance(error, tarfile.OutsideDestinationError):
        return "points outside the directory"
    if isinstance(error, tarfile.SpecialFileError):
        return "is a device or FIFO"
    if isinstance(error, tarfile.AbsoluteLinkError | tarfile.LinkOutsideDestinationError):
        return "is a link that leaves the directory"
    return f"is not allowed ({error})"


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a checked archive into a fresh ``into``; answers ``into``."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into

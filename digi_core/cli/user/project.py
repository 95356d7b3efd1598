"""The project directory: its link to a service (``.digi/service.json``, per API URL) and
its source as the tarball `digi up` sends, without what ``.gitignore``/``.dockerignore`` leave out.

Ignore files are read at the directory's root only, with Git's pattern rules (``pathspec``):
``.dockerignore`` lines are matched the same way, which covers the usual simple patterns.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pathspec

LINK_FILE = Path(".digi") / "service.json"
IGNORE_FILES = (".gitignore", ".dockerignore")
# Never sent: the repository's history and this CLI's own state.
ALWAYS_IGNORED = (".git/", ".digi/")


def linked_service(directory: Path, api_url: str) -> str | None:
    """The id of the service this directory deploys to on ``api_url``, if linked."""
    try:
        links = json.loads((directory / LINK_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    entry = links.get(api_url) if isinstance(links, dict) else None
    return str(entry["serviceId"]) if isinstance(entry, dict) and "serviceId" in entry else None


def link_service(directory: Path, api_url: str, service_id: str, name: str) -> Path:
    """Remember that ``directory`` deploys to the service; answers the link file."""
    path = directory / LINK_FILE
    try:
        links = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        links = {}
    links[api_url] = {"serviceId": service_id, "name": name}
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(links, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class StackFile:
    """A digi.toml read from disk, and the project directory it belongs to."""

    path: Path
    text: str

    @property
    def directory(self) -> Path:
        return self.path.parent

    @classmethod
    def read(cls, path: Path) -> StackFile:
        return cls(path.resolve(), path.read_text())


def service_name_for(directory: Path) -> str:
    """A service name from a directory's name: lowercase letters, digits and hyphens."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name[:24].rstrip("-") or "app"


def ignore_spec(directory: Path) -> pathspec.GitIgnoreSpec:
    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        path = directory / name
        if path.is_file():
            lines += path.read_text().splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def source_files(directory: Path) -> list[str]:
    """The files to send, relative to ``directory`` with ``/``, sorted."""
    spec = ignore_spec(directory)
    kept = []
    for root, folders, files in os.walk(directory):
        relative = Path(root).relative_to(directory)
        # Ignored folders are not walked: node_modules can hold more than the whole project.
        folders[:] = sorted(
            folder
            for folder in folders
            if not spec.match_file((relative / folder).as_posix() + "/")
        )
        kept += [
            (relative / name).as_posix()
            for name in files
            if not spec.match_file((relative / name).as_posix())
        ]
    return sorted(kept)


@dataclass
class Tarball:
    """A project's gzipped source in a temporary file, to upload."""

    file: IO[bytes]
    files: int

    @property
    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size


def make_tarball(directory: Path) -> Tarball:
    """The kept files (symlinks as links: the server refuses those leaving the tree)."""
    names = source_files(directory)
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - the caller uploads, then closes it
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name in names:
            tar.add(directory / name, arcname=name, recursive=False)
    archive.seek(0)
    return Tarball(archive, len(names))

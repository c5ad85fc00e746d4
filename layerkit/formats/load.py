"""``load PATH``: detect what PATH is (docker-archive, OCI archive, OCI layout) and import it."""

from __future__ import annotations

from pathlib import Path

from ..engine.progress import Progress
from ..engine.store import Store
from ..errors import InvalidArchive, NotFound
from .docker_archive import load_docker_archive
from .importer import LoadedImage
from .oci import load_oci
from .sources import DirSource, Source, open_archive


def split_layout_tag(path: str) -> tuple[str, str | None]:
    """``DIR:TAG`` -> (DIR, TAG) when DIR is an existing directory and PATH itself is not."""
    if Path(path).exists() or ":" not in path:
        return path, None
    head, _, tag = path.rpartition(":")
    while head and not Path(head).is_dir() and ":" in head:
        # a tag may itself hold a colon (docker.io/library/busybox:latest); try the first split too
        head2, _, _ = head.partition(":")
        if Path(head2).is_dir():
            return head2, path[len(head2) + 1:]
        break
    if head and Path(head).is_dir():
        return head, tag
    first, _, rest = path.partition(":")
    if Path(first).is_dir():
        return first, rest
    return path, None


def open_path(path: str) -> tuple[Source, str | None]:
    """Open PATH (an archive, plain or compressed, or a layout directory, ``DIR:TAG`` naming one of its
    images) as a source; returns (source, tag filter). A gzipped archive is streamed
    (:class:`~.sources.GzipTarSource`), never expanded to disk."""
    real, tag = split_layout_tag(path)
    p = Path(real)
    if not p.exists():
        raise NotFound(f"{path}: no such file or directory")
    if p.is_dir():
        return DirSource(p, str(path)), tag
    return open_archive(p, str(path)), tag


def load_path(store: Store, path: str, progress: Progress | None = None) -> list[LoadedImage]:
    """Import every image at ``path``; see the module docstring for what is recognised. ``progress``
    receives each layer's events (:mod:`layerkit.engine.progress`)."""
    src, tag = open_path(path)
    try:
        if src.has("manifest.json"):
            return load_docker_archive(store, src, progress=progress)
        if src.has("index.json") and src.has("oci-layout"):
            return load_oci(store, src, tag=tag, progress=progress)
        raise InvalidArchive(f"{path}: neither a docker-archive (no manifest.json) nor an OCI layout "
                             f"(no index.json and oci-layout)")
    finally:
        src.close()

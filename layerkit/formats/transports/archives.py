"""Sources for the file transports: ``docker-archive:PATH[:REF|:@N]``, ``oci:DIR[:NAME]`` and
``oci-archive:PATH[:NAME]``.

The archive formats themselves are read by :mod:`..docker_archive` and :mod:`..oci` (which ``load`` uses
too); this module chooses the image a reference names, with skopeo's rules: a docker-archive REF picks the
entry whose RepoTags hold it, ``@N`` the N-th entry, no REF the only image; an OCI NAME picks the index
entries whose ``org.opencontainers.image.ref.name`` is NAME, no NAME the only image. With ``every=True``
(``load``) a reference without REF or NAME yields every image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import ImageNotFound, InvalidArchive, LayerkitError
from .. import docker_archive, oci
from ..sources import DirSource, Source, exists_or_raise, open_archive
from .base import SourceImage
from .location import Location


class _ArchiveSource:
    """What the file transports share: the opened archive or directory, closed with the source."""

    def __init__(self, loc: Location, src: Source) -> None:
        self.loc = loc
        self.label = str(loc)
        self._src = src

    def close(self) -> None:
        """Close the archive."""
        self._src.close()

    def __enter__(self) -> _ArchiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DockerArchiveSource(_ArchiveSource):
    """``docker-archive:PATH[:REF|:@N]``: a ``docker save`` archive (plain or compressed, either form)."""

    def __init__(self, loc: Location, every: bool = False) -> None:
        path = exists_or_raise(loc.path)
        if path.is_dir():
            raise InvalidArchive(f"{loc}: {loc.path} is a directory, not a docker-archive")
        super().__init__(loc, open_archive(path, loc.path))
        self.every = every

    def images(self) -> Iterator[SourceImage]:
        """The image the reference names (every image with ``every`` and no REF)."""
        loc, src = self.loc, self._src
        if not src.has("manifest.json"):
            raise InvalidArchive(f"{loc}: not a docker-archive (no manifest.json)")
        entries = docker_archive.archive_entries(src)
        if loc.index is not None:
            if loc.index >= len(entries):
                raise ImageNotFound(f"{loc}: index @{loc.index} out of range (the archive holds "
                                    f"{len(entries)} images)")
            entries = [entries[loc.index]]
        elif loc.ref is not None:
            hits = [e for e in entries
                    if any(r.normalized == loc.ref.normalized for r in docker_archive.entry_names(e))]
            if not hits:
                raise ImageNotFound(f"{loc}: no image tagged {loc.ref.familiar} in the archive")
            entries = hits[:1]
        elif len(entries) > 1 and not self.every:
            raise LayerkitError(f"{loc}: the archive holds {len(entries)} images; choose one with "
                                f"docker-archive:PATH:REF or docker-archive:PATH:@N")
        yield from docker_archive.source_images(src, entries)


class OciSource(_ArchiveSource):
    """``oci:DIR[:NAME]`` (a layout directory) and ``oci-archive:PATH[:NAME]`` (the layout in a tar)."""

    def __init__(self, loc: Location, every: bool = False) -> None:
        p = exists_or_raise(loc.path)
        if loc.transport == "oci" and not p.is_dir():
            raise InvalidArchive(f"{loc}: {loc.path} is a file, not an OCI layout directory (oci-archive: "
                                 f"reads archives)")
        if loc.transport == "oci-archive" and p.is_dir():
            raise InvalidArchive(f"{loc}: {loc.path} is a directory, not an OCI archive (oci: reads layouts)")
        super().__init__(loc, DirSource(Path(p), loc.path) if p.is_dir() else open_archive(p, loc.path))
        self.every = every

    def images(self) -> Iterator[SourceImage]:
        """The images answering to NAME, or the only one (every image with ``every`` and no NAME)."""
        loc, src = self.loc, self._src
        if not (src.has("index.json") and src.has("oci-layout")):
            raise InvalidArchive(f"{loc}: not an OCI layout (no index.json and oci-layout)")
        if loc.name is None and not self.every:
            _, index = src.read_json("index.json", "index")
            descs = index.get("manifests") if isinstance(index, dict) else None
            n = len(descs) if isinstance(descs, list) else 1  # source_images names a wrong shape
            if n != 1:
                raise LayerkitError(f"{loc}: more than one image in oci, choose an image ({n} in the layout; "
                                    f"name one with {loc.transport}:{loc.path}:NAME)" if n else
                                    f"{loc}: the layout holds no image")
        images = list(oci.source_images(src, loc.name))
        if len(images) != 1 and not self.every:
            raise LayerkitError(f"{loc}: {len(images)} images answer to {loc.name!r}; name exactly one")
        yield from images

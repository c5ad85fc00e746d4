"""The file transports' registration: ``docker-archive``, ``oci`` and ``oci-archive``.

Their sources are :mod:`.archives`' (the formats read by :mod:`..docker_archive` and :mod:`..oci`); their
destinations are :mod:`..archive_writers`' (a temporary file renamed into place, or a layout whose
``index.json`` is replaced last). Opening a destination checks it and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import NotFound
from ..archive_writers import DockerArchiveDestination, OciArchiveDestination, OciLayoutDestination
from .archives import DockerArchiveSource, OciSource
from .location import Location, TransportError


def _parent_exists(loc: Location) -> None:
    parent = Path(loc.path).parent
    if not parent.is_dir():
        raise NotFound(f"{loc}: {parent}: no such directory")


def docker_archive_source(loc: Location, every: bool = False, **_: object) -> DockerArchiveSource:
    """``docker-archive:PATH[:REF|:@N]`` to read."""
    return DockerArchiveSource(loc, every=every)


def oci_source(loc: Location, every: bool = False, **_: object) -> OciSource:
    """``oci:DIR[:NAME]`` or ``oci-archive:PATH[:NAME]`` to read."""
    return OciSource(loc, every=every)


def docker_archive_destination(loc: Location, **_: object) -> DockerArchiveDestination:
    """``docker-archive:PATH[:REF]`` to write (REF, when given, is each image's RepoTags entry)."""
    if loc.index is not None:
        raise TransportError(f"{loc}: a source index (@N) cannot be a destination")
    _parent_exists(loc)
    if Path(loc.path).is_dir():
        raise TransportError(f"{loc}: {loc.path} is a directory")
    return DockerArchiveDestination(loc.path, label=str(loc))


def oci_destination(loc: Location, **_: object) -> OciLayoutDestination:
    """``oci:DIR[:NAME]`` to write: each image listed under NAME, or unnamed (as skopeo writes it)."""
    p = Path(loc.path)
    if p.exists() and not p.is_dir():
        raise TransportError(f"{loc}: {loc.path} is not a directory (oci-archive: writes archives)")
    return OciLayoutDestination(loc.path, name=loc.name, label=str(loc), use_names=False)


def oci_archive_destination(loc: Location, **_: object) -> OciArchiveDestination:
    """``oci-archive:PATH[:NAME]`` to write."""
    _parent_exists(loc)
    if Path(loc.path).is_dir():
        raise TransportError(f"{loc}: {loc.path} is a directory (oci: writes layouts)")
    return OciArchiveDestination(loc.path, name=loc.name, label=str(loc), use_names=False)


# what :mod:`.registry` registers: name -> (source opener, destination opener)
TRANSPORTS = {
    "docker-archive": (docker_archive_source, docker_archive_destination),
    "oci": (oci_source, oci_destination),
    "oci-archive": (oci_source, oci_archive_destination),
}

"""``docker-daemon:REF``: a running Docker or Podman, through the Docker Engine API
(:mod:`layerkit.formats.engine_api`): ``docker save`` as a source, ``docker load`` as a destination."""

from __future__ import annotations

from ...engine.progress import Progress
from ...engine.store import Store
from ..engine_api import DaemonDestination, DaemonSource
from .location import Location, TransportError


def open_source(loc: Location, store: Store | None = None, endpoint: str | None = None,
                progress: Progress | None = None, **_: object) -> DaemonSource:
    """The engine's image REF (a tag, or an image ID ``sha256:HEX``); the archive it sends is kept under
    ``store`` (or the system's temporary directory) until the source is closed."""
    return DaemonSource(store, loc.image_id or loc.ref.familiar, endpoint=endpoint, progress=progress)


def open_destination(loc: Location, store: Store, endpoint: str | None = None, **_: object) -> DaemonDestination:
    """The engine, to ``docker load`` into; REF must be a tag. Connects at once (nothing is written)."""
    if loc.image_id or loc.ref.digest:
        raise TransportError(f"{loc}: a docker-daemon destination must be a tag (NAME:TAG)")
    return DaemonDestination(store, endpoint, label=str(loc))


# what :mod:`.registry` registers: name -> (source opener, destination opener)
TRANSPORTS = {
    "docker-daemon": (open_source, open_destination),
}

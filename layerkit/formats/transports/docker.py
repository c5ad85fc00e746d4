"""``docker://REF``: a registry, through the OCI distribution API (:mod:`layerkit.formats.registry`).

As a source, the manifest REF names for one platform (``platform=``, default this machine's), its layers
streamed lazily (:class:`~layerkit.formats.registry.pulling.RegistrySource`); as a destination, blobs
checked with ``HEAD``, mounted from another repository, or uploaded, the manifest ``PUT`` at commit
(:class:`~layerkit.formats.registry.pushing.RegistryDestination`).
"""

from __future__ import annotations

from ...engine.progress import Progress
from ...engine.store import Store
from ..registry.pulling import RegistrySource
from ..registry.pushing import RegistryDestination
from .location import Location, TransportError


def open_source(loc: Location, store: Store | None = None, insecure: bool = False,
                progress: Progress | None = None, platform: str | None = None, **_: object) -> RegistrySource:
    """The image ``docker://REF`` names (the store, when given, supplies a config it holds already)."""
    return RegistrySource(str(loc.ref), store, platform=platform, insecure=insecure, progress=progress)


def open_destination(loc: Location, store: Store, insecure: bool = False, progress: Progress | None = None,
                     **_: object) -> RegistryDestination:
    """``docker://REF`` to push to; REF must be a tag."""
    if loc.ref.digest:
        raise TransportError(f"{loc}: cannot push to a digest reference; give a tag")
    return RegistryDestination(store, str(loc.ref), insecure=insecure, progress=progress)


# what :mod:`.registry` registers: name -> (source opener, destination opener)
TRANSPORTS = {
    "docker": (open_source, open_destination),
}

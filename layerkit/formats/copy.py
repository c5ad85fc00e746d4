"""``copy SRC DST``: move an image between the transports skopeo names, through the layerkit store.

The transport references (``docker-archive:PATH[:REF]``, ``oci:DIR[:NAME]``, ``docker://REF`` ...) are parsed
as skopeo parses them, by :mod:`.transports.location`, which describes each.

Both sides are opened through the table of transports (:mod:`.transports.registry`), so this module names
no transport: a source that is not the store is first copied into it (:func:`~.pipeline.copy_image` into
a :class:`~.stored.StoreDestination`, as ``load``, ``pull`` or ``load --from-engine`` would, keeping the
names it carries); the image is then copied from the store to the destination. A
destination REF or NAME names the image there; without one, a docker-archive or daemon destination gets
the names the source was addressed by (as ``docker save NAME`` does), an OCI destination gets no name
(as skopeo writes it).
"""

from __future__ import annotations

from ..engine.image import Image
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store
from ..errors import LayerkitError
from .imagesource import ImageDestination, ImageSource
from .pipeline import copy_image
from .stored import StoreDestination, StoreSource
from .transports.location import Location, TransportError, parse_location
from .transports.registry import locate, open_destination, open_source

__all__ = ["Location", "TransportError", "copy", "parse_location"]


def _tagged(ref: Reference) -> Reference:
    """A name as ``load`` reports it: ``:latest`` added to a reference with neither tag nor digest."""
    return ref if ref.tag or ref.digest else ref.with_tag("latest")


def _into_store(store: Store, loc: Location, source: ImageSource, progress: Progress | None
                ) -> tuple[Image, list[Reference], dict | None, list[str]]:
    """The source's image in the store (copied in unless the source is the store itself): (image, the
    names the source gave it, the source's transfer report, its lines)."""
    if isinstance(source, StoreSource) and source.store is store:
        [(image, names)] = source.chosen
        return image, names, None, []
    options = getattr(source, "store_options", {"defer": True})  # an archive's layers: read in archive order
    done = copy_image(source, StoreDestination(store, **options), progress=progress)
    if len(done) != 1:  # a source that names one image by its reference sent several (an engine might)
        several = getattr(source, "several", "{n} images came from the source; name exactly one")
        raise LayerkitError(f"{loc}: " + several.format(n=len(done)))
    image, taken = done[0]
    if loc.ref is not None:
        names = [loc.ref] if not loc.ref.digest else []
    else:
        names = [_tagged(t) for t in taken if not t.digest]
    transfer = source.transfer(store, image.id) if hasattr(source, "transfer") else None
    return image, names, transfer.to_json() if transfer else None, transfer.lines() if transfer else []


def _target_names(loc: Location, names: list[Reference]) -> list[Reference]:
    """The names the image takes at the destination: its REF, else the names the source gave it (an OCI
    destination without NAME writes none, a registry its own reference, whatever these are)."""
    if loc.ref is not None:
        return [loc.ref]
    if loc.store_name:
        return [parse_reference(loc.store_name)]  # the destination checked that it is one
    return [n for n in names if not n.digest]


def _summary(destination: ImageDestination, results: list, target: list[Reference]) -> dict:
    """What the destination says it did (``names``, and ``push`` or ``engine_ids`` where it has them)."""
    out = {"names": [n.familiar for n in target], "push": None, "engine_ids": None, "lines": []}
    summary = getattr(destination, "summary", None)
    if summary is not None:
        out.update(summary(results))
    return out


def copy(store: Store, src: str, dst: str, insecure: bool = False, progress: Progress | None = None,
         endpoint: str | None = None) -> dict:
    """Copy the image ``src`` names to ``dst`` (both in skopeo's ``TRANSPORT:REFERENCE`` form, or a bare
    store reference), through the store.

    ``insecure`` allows plain HTTP / unverified TLS for ``docker://`` registries other than localhost;
    ``endpoint`` is the engine for ``docker-daemon:`` (default ``DOCKER_HOST``); ``progress`` receives the
    events of the load, pull or push (:mod:`layerkit.engine.progress`). Both sides are parsed and the
    destination checked before anything moves. Returns ``{"source", "destination", "id",
    "manifest_digest", "names" (what the destination calls the image), "pull", "push" (the registry
    transfers, or None), "engine_ids", "lines"}``.
    """
    s = locate(src)
    d = locate(dst)
    options = {"store": store, "insecure": insecure, "progress": progress, "endpoint": endpoint}
    destination = open_destination(d, **options)  # checked; nothing is written before an image is put
    try:
        with open_source(s, **options) as source:
            image, names, pull, lines = _into_store(store, s, source, progress)
    except BaseException:
        destination.abort()
        raise
    img = store.image(image.id)  # as recorded (the manifest the store kept)
    target = _target_names(d, names)
    results = copy_image(StoreSource(store, [(img, names)]), destination, names=target, progress=progress)
    out = _summary(destination, results, target)
    lines = lines + out["lines"]
    lines.append(f"Copied {img.id} from {s} to {d}")
    return {"source": s.text, "destination": d.text, "id": img.id, "manifest_digest": img.manifest_digest,
            "names": out["names"], "pull": pull, "push": out["push"], "engine_ids": out["engine_ids"],
            "lines": lines}

"""``layerkit:REF`` or a bare reference: layerkit's own store (:mod:`layerkit.formats.stored`).

As a source, the stored image REF names (a tag, an ID, ``NAME@DIGEST``), with the tags of it that REF
names; as a destination, the store itself (REF, when given, is the tag the image takes).
"""

from __future__ import annotations

import difflib

from ...engine.reference import parse_reference
from ...engine.store import Store, user_reference_error
from ...errors import ImageNotFound, InvalidReference
from ..stored import StoreDestination, StoreSource
from . import location
from .location import _KNOWN, OTHER_SKOPEO_TRANSPORTS, Location, TransportError


def open_source(loc: Location, store: Store, **_: object) -> StoreSource:
    """The stored image ``loc`` names; :class:`ImageNotFound` (with a hint when the name looks like a
    misspelt transport, ``dockr:busybox``)."""
    if not loc.store_name:
        raise TransportError(f"{loc}: name the image to copy (layerkit:REF or a bare reference)")
    try:
        img = store.image(loc.store_name)
    except ImageNotFound as exc:
        head, colon, _ = loc.text.partition(":")
        near = difflib.get_close_matches(head, location.TRANSPORTS + OTHER_SKOPEO_TRANSPORTS, n=1, cutoff=0.7)
        hint = ""
        if colon and near and loc.text == loc.store_name:  # dockr:busybox is a valid reference, too
            hint = f" (if {head!r} is meant as a transport, did you mean {near[0]!r}? use {_KNOWN})"
        raise ImageNotFound(f"{exc}{hint}") from exc
    names = []
    try:
        r = parse_reference(loc.store_name)
        names = [t for t in img.tags if t.normalized == r.normalized]
    except InvalidReference:
        pass
    return StoreSource(store, [(img, names)], label=str(loc))


def open_destination(loc: Location, store: Store, **_: object) -> StoreDestination:
    """The store; ``loc``'s REF (if any) must be a tag, not a digest."""
    if loc.store_name:
        try:
            r = parse_reference(loc.store_name)
        except InvalidReference as exc:
            raise TransportError(user_reference_error(loc.store_name, exc)) from exc
        if r.digest:
            raise TransportError(f"{loc}: refusing to create a tag with a digest reference")
    return StoreDestination(store, label=str(loc))


# what :mod:`.registry` registers: name -> (source opener, destination opener)
TRANSPORTS = {
    "layerkit": (open_source, open_destination),
}

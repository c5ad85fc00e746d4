"""The table of transports, by the names skopeo uses, and :func:`open_source` over it.

A transport is one module that calls :func:`register` with its name and the functions that open a source
(and, when it can be written to, a destination) for a parsed :class:`~.location.Location`. Nothing else
names transports: ``copy``, ``load`` and the read-only verbs all go through this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import ImageDestination, ImageSource
from .location import TRANSPORTS, Location, TransportError, parse_location

SourceOpener = Callable[..., ImageSource]  # (location, **options) -> source
DestinationOpener = Callable[..., ImageDestination]  # (location, **options) -> destination


@dataclass(frozen=True)
class Transport:
    """One transport: its skopeo name and how to open it for reading and for writing."""

    name: str
    source: SourceOpener | None = None
    destination: DestinationOpener | None = None


_TABLE: dict[str, Transport] = {}


def register(name: str, source: SourceOpener | None = None, destination: DestinationOpener | None = None
             ) -> Transport:
    """Add (or replace) the transport called ``name``; returns it."""
    t = Transport(name, source, destination)
    _TABLE[name] = t
    return t


def transport(name: str) -> Transport:
    """The registered transport called ``name``; :class:`TransportError` when there is none."""
    _builtin()
    t = _TABLE.get(name)
    if t is None:
        raise TransportError(f"unknown transport {name!r} (known: {', '.join(sorted(_TABLE))})")
    return t


def locate(text: str) -> Location:
    """Parse a transport reference: :func:`~.location.parse_location` for the transports skopeo names, and
    ``NAME:REST`` (REST in ``path``) for a transport registered under another name."""
    name, colon, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
    if colon and name not in TRANSPORTS:
        _builtin()
        if name in _TABLE:
            return Location(text, name, path=rest)
    return parse_location(text)


def open_source(text: str | Location, **options: object) -> ImageSource:
    """Open the image(s) a transport reference names for reading (``docker-archive:X``, ``oci:DIR:NAME``,
    ...). ``options`` go to the transport (``every=True``: every image of an archive or layout)."""
    loc = text if isinstance(text, Location) else locate(text)
    t = transport(loc.transport)
    if t.source is None:
        raise TransportError(f"{loc}: the {loc.transport} transport cannot be read from")
    return t.source(loc, **options)


def open_destination(text: str | Location, **options: object) -> ImageDestination:
    """Open a transport reference for writing; see :class:`~.base.ImageDestination`."""
    loc = text if isinstance(text, Location) else locate(text)
    t = transport(loc.transport)
    if t.destination is None:
        raise TransportError(f"{loc}: the {loc.transport} transport cannot be written to")
    return t.destination(loc, **options)


def is_transport_reference(text: str) -> bool:
    """Whether ``text`` names a transport other than the store (``docker-archive:X``, ``oci:DIR``, ...)."""
    try:
        return parse_location(text).transport != "layerkit"
    except TransportError:
        return False


_LOADED = False


def _builtin() -> None:
    """Register the transports layerkit ships (on first use: importing them costs time ``import layerkit``
    does not pay)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import daemon, docker, files, store

    for module in (files, docker, daemon, store):  # each module declares its transports
        for name, (source, destination) in module.TRANSPORTS.items():
            if name not in _TABLE:  # a transport registered before first use replaces the built-in one
                register(name, source, destination)

"""The image pipeline's two interfaces: where images come from and where they go.

(Here rather than in :mod:`.transports` so that the format modules, which the transports use, can build
these values without an import cycle between the two; :mod:`.transports.base` re-exports them.)

Every transport (``docker-archive``, ``oci``, ``oci-archive``, ``docker``, ``docker-daemon`` and
layerkit's store) is one module of this package that registers an :class:`ImageSource` opener, an
:class:`ImageDestination` opener, or both, under the name skopeo gives it (:mod:`.transports.registry`).

A source yields :class:`SourceImage` values: what one image is made of, read lazily. The config and the
manifest are small documents read (bounded, checked) when the source lists its images; layers are
:class:`LayerSource` openers, read only when a consumer streams them. So the
same value serves a copy into the store (:class:`~.importer.ImportBatch`), a copy to
another transport, and analysis in place (an index built from the layer stream, nothing written).

A destination takes images one at a time and makes them visible all together in :meth:`commit`, or not at
all (:meth:`abort`, or an exception inside its ``with`` block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from ..engine.progress import Progress
from ..engine.reference import Reference


@dataclass
class LayerSource:
    """Where to read one layer blob from, and what it should hash to."""

    open: Callable[[], BinaryIO]
    label: str
    size: int | None = None
    digest: str | None = None
    offset: int | None = None  # where it lies in its archive: deferred layers are read in this order


@dataclass
class SourceImage:
    """One image as a source holds it.

    ``config_bytes`` is the config document byte for byte (its sha256 is the image ID; ``expected_id``,
    when the source names it, is checked against that by whoever consumes it). ``layers`` are in manifest
    order, bottom first; each names its blob digest, size and media type when the source knows them.
    ``manifest_bytes`` is the source's own manifest when it has one (OCI layouts, registries) so that a copy
    can keep its digest. ``names`` are the references the source gives the image (RepoTags, ref.name
    annotations, the registry reference). ``label`` names the image in error messages (``ARCHIVE: CONFIG``).
    """

    config_bytes: bytes
    layers: list[LayerSource]
    names: list[Reference]
    label: str
    expected_id: str | None = None
    manifest_bytes: bytes | None = None
    media_types: list[str] = field(default_factory=list)  # each layer's media type, when known


@runtime_checkable
class ImageSource(Protocol):
    """Images read from one transport reference (``docker-archive:X``, ``oci:DIR:NAME``, ...).

    :meth:`images` yields every image the reference names: all images of an archive or layout when the
    reference names none in particular (``load``), else the one it names. A source holds open files or
    connections until :meth:`close` (or the end of its ``with`` block)."""

    label: str

    def images(self) -> Iterator[SourceImage]:
        """The images the reference names, each checked as far as its documents go."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...

    def __enter__(self) -> ImageSource: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class ImageDestination(Protocol):
    """Where :func:`copy_image` writes images; all-or-nothing across the images it is given.

    ``put_image`` streams (or skips, or mounts) the image's blobs and records its manifest privately;
    ``commit`` makes every image put so far visible at once (names included); ``abort`` removes what was
    written. Leaving the ``with`` block by an exception aborts."""

    label: str

    def has_blob(self, digest: str) -> bool:
        """The destination holds this blob already (a layer that exists is never written twice)."""
        ...

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Write the image's missing blobs and record its manifest under ``names``, privately until commit."""
        ...

    def commit(self) -> list:
        """Make every image put so far visible; returns what each became (transport specific)."""
        ...

    def abort(self) -> None:
        """Remove everything written since the destination was opened."""
        ...

    def __enter__(self) -> ImageDestination: ...

    def __exit__(self, *exc: object) -> None: ...

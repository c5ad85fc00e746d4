"""layerkit's own store as a transport: ``layerkit:REF`` or a bare reference.

* :class:`StoreSource` yields stored images as :class:`~.imagesource.SourceImage` values whose layers open the
  stored blobs (:class:`~.pipeline.FileLayer`: a destination may link them, re-read them, inflate them); the
  manifest is the one the store keeps, byte for byte, so a copy out keeps its digest.
* :class:`StoreDestination` brings images in through :class:`~.importer.ImportBatch`: a
  layer whose diff_id the store holds is not read, every new blob is verified (digest, diff_id) before it
  is renamed into place, and the images of one copy are recorded together or not at all.

``images_with_tags`` is how ``save`` and ``save --to-engine`` resolve the names they are given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from ..engine.image import Image, Layer
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store
from ..errors import InvalidReference
from .imagesource import SourceImage
from .importer import ImportBatch
from .pipeline import FileLayer

LABEL = "layerkit store"


def images_with_tags(store: Store, names: list[str]) -> list[tuple[Image, list[Reference]]]:
    """Resolve store names as ``save`` does: a tag sends that tag, an ID sends the image untagged; an
    image named twice is sent once, with every tag it was named by."""
    chosen: dict[str, tuple[Image, list[Reference]]] = {}
    for name in names:
        img = store.image(name)
        entry = chosen.setdefault(img.id, (img, []))
        try:
            r = parse_reference(name)
        except InvalidReference:
            continue
        for t in img.tags:
            if t.normalized == r.normalized and t not in entry[1]:
                entry[1].append(t)
    return list(chosen.values())


def stored_image(store: Store, img: Image, names: list[Reference]) -> SourceImage:
    """One stored image as a source image: its config and manifest bytes as stored, its layers the
    stored blobs."""
    indexed = {"done": False}

    def tar_size_of(layer: Layer):
        def tar_size() -> int:
            if not indexed["done"]:  # a pulled image's layers are indexed (and checked) all at once, on threads
                store.index_layers(img.layers)
                indexed["done"] = True
            return layer.tar_size
        return tar_size

    layers = [FileLayer(open=lambda d=la.digest: store.blobs.open(d), label=f"{LABEL}: layer {la.digest}",
                        size=la.compressed_size, digest=la.digest, path=store.blobs.path(la.digest),
                        media_type=la.media_type, tar_size=tar_size_of(la))
              for la in img.layers]
    return SourceImage(config_bytes=store.blobs.read_bytes(img.id), layers=layers, names=list(names),
                       label=f"{LABEL}: {img.id}", expected_id=img.id,
                       manifest_bytes=store.blobs.read_bytes(img.manifest_digest),
                       media_types=[la.media_type for la in img.layers])


class StoreSource:
    """Stored images, each with the names it is sent under (``save``, ``push``, a copy out of the store)."""

    def __init__(self, store: Store, images: list[tuple[Image, list[Reference]]], label: str = LABEL) -> None:
        self.store = store
        self.chosen = images
        self.label = label

    @classmethod
    def named(cls, store: Store, names: list[str]) -> StoreSource:
        """The images ``names`` (tags or IDs) resolve to, as :func:`images_with_tags` resolves them."""
        return cls(store, images_with_tags(store, names))

    def images(self) -> Iterator[SourceImage]:
        """Each chosen image, read from the store as it is reached."""
        for img, names in self.chosen:
            yield stored_image(self.store, img, names)

    def close(self) -> None:
        """Nothing to release: every blob is opened by the layer that reads it."""

    def __enter__(self) -> StoreSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreDestination:
    """Images into the store, all or nothing (:class:`~.importer.ImportBatch`).

    ``defer``: an archive's layers are read after every image's documents were checked, in archive order;
    ``workers`` and ``index_now``: see :meth:`ImportBatch.add` (a pull fetches several layers at once and
    checks their diff_ids on first use). :meth:`commit` returns ``(image, tags it took)`` per image."""

    def __init__(self, store: Store, defer: bool = False, workers: int = 1, index_now: bool = True,
                 label: str = LABEL) -> None:
        self.store = store
        self.label = label
        self._workers = workers
        self._index_now = index_now
        self._batch = ImportBatch(store, defer=defer)

    def has_blob(self, digest: str) -> bool:
        """The store holds this blob."""
        return self.store.blobs.has(digest)

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Verify the image and stream its new layers into temporary blobs (or note them, deferred)."""
        if names is not image.names:
            image = replace(image, names=list(names))
        self._batch.add_image(image, progress=progress, workers=self._workers, index_now=self._index_now)

    def commit(self) -> list[tuple[Image, list[Reference]]]:
        """Make the blobs visible and record every image put, in order, with one update of the index."""
        return self._batch.commit()

    def summary(self, results: list[tuple[Image, list[Reference]]]) -> dict:
        """What a copy reports of the images committed: the tags they took."""
        return {"names": [t.familiar for _, taken in results for t in taken]}

    def abort(self) -> None:
        """Drop every temporary blob; the store is as it was."""
        self._batch.abort()

    def __enter__(self) -> StoreDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

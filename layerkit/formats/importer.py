"""Bringing one image (config + layer streams) into the store, all or nothing.

Every layer is streamed into a temporary blob and verified (blob digest and diff_id) before anything is
made visible; only when all layers and the config check out are the blobs renamed into place and the
index updated; an archive of several images is verified whole before any of them is recorded
(:class:`ImportBatch`), and recorded with one update of ``index.json`` (:meth:`Store.add_images`), so an
interrupted load leaves no tag of the archive. A layer whose diff_id the store already holds is not read
again, whatever compression it came in: the new image's manifest points at the stored blob.

An archive's layers are read after every image's config and manifest has been checked, in the order their
members lie in the archive (``defer=True``; :attr:`LayerSource.offset`): a gzipped archive is then
inflated once more at most (see :mod:`.sources`), and a bad document late in an archive fails the load
before any layer is read.

The layers of one image may be ingested concurrently (``workers``; the registry's pull uses it, as each
layer is its own HTTP stream): hashing, inflating, socket reads and file writes release the GIL, so layers
overlap on several cores. The largest layers start first; the first failure stops the others (their next
read raises), and every temporary blob of the image is dropped before the error is raised.

Progress (:mod:`layerkit.engine.progress`): each layer of an image is reported once, ``exists`` when the
store holds it (nothing is read) or ``done`` with its blob's size once it is verified; the event names the
layer by its blob digest when the source gives one, else by its diff_id.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import BinaryIO

from ..engine.digests import sha256_bytes
from ..engine.image import Image
from ..engine.layer import IngestResult, fetch_layer, ingest_layer
from ..engine.mediatypes import oci_layer_type
from ..engine.progress import Progress, ProgressEvent, Status
from ..engine.reference import Reference
from ..engine.shapes import parse_config  # the same rules check what the store reads back
from ..engine.store import NewImage, NewLayer, Store
from ..errors import DigestMismatch, InvalidManifest, LayerkitError, MaxDepthExceeded
from .imagesource import LayerSource, SourceImage

__all__ = ["ImportBatch", "LayerSource", "LoadedImage", "import_image", "parse_config"]


@dataclass
class LoadedImage:
    """One image brought in: the tags it took (familiar form) and its ID."""

    image: Image
    tags: list[str]

    @property
    def id(self) -> str:
        """The image ID (sha256 of the config)."""
        return self.image.id


# ~1 KB of memory per tag from the archive's document to index.json (150,000 short tags: 174 MB peak RSS);
# the limit keeps a load under 200 MB with the longest tags the 16 MiB document cap allows
MAX_TAGS = 100_000
MAX_STORED_LAYERS = 1000


class _Cancelled(BaseException):  # noqa: N818 - not an error: another layer failed first
    """Raised in a worker whose layer is no longer wanted (a BaseException, so no ``except Exception``
    on the way turns it into a message about this layer)."""


class _Cancellable:
    """A layer stream whose next read raises :class:`_Cancelled` once ``cancel`` is set."""

    def __init__(self, f: BinaryIO, cancel: threading.Event) -> None:
        self._f = f
        self._cancel = cancel

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled
        return self._f.read(n)


class ImportBatch:
    """Images brought in together (one ``load``), all or nothing.

    :meth:`add` streams an image's new layers into temporary blobs and verifies them (blob digest and
    diff_id) and the config; nothing is visible until :meth:`commit`, which renames the blobs into place
    and records the images. If any image of an archive is bad, :meth:`abort` (or leaving the ``with``
    block by an exception) drops every temporary blob, so the store is left exactly as it was. A layer
    shared by several images of the batch is read once.
    """

    def __init__(self, store: Store, defer: bool = False) -> None:
        self.store = store
        self._known, self._blobs = _store_layers(store)
        self._pending: dict[str, IngestResult] = {}  # diff_id -> verified, uncommitted layer
        self._defer = defer
        self._tags = 0
        self._deferred: dict[str, tuple[LayerSource, Progress | None]] = {}
        # config, layers (a str: the diff_id of a layer still to ingest), tags, manifest
        self._images: list[tuple[bytes, list[NewLayer | str], list[Reference], bytes | None]] = []

    def __enter__(self) -> ImportBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add_image(self, image: SourceImage, progress: Progress | None = None, workers: int = 1,
                  index_now: bool = True) -> None:
        """:meth:`add` for a :class:`~.imagesource.SourceImage` (what every transport's source yields)."""
        self.add(image.config_bytes, image.layers, image.names, image.label, expected_id=image.expected_id,
                 progress=progress, manifest_bytes=image.manifest_bytes, workers=workers, index_now=index_now)

    def add(
        self,
        config_bytes: bytes,
        layers: list[LayerSource],
        tags: list[Reference],
        label: str,
        expected_id: str | None = None,
        progress: Progress | None = None,
        manifest_bytes: bytes | None = None,
        workers: int = 1,
        index_now: bool = True,
    ) -> None:
        """Verify one image and stream its new layers into temporary blobs.

        ``manifest_bytes`` (from an OCI layout or a registry) is kept byte for byte when the store ends
        up holding exactly the blobs it names, so the manifest digest survives the round trip.
        ``workers`` > 1 ingests up to that many layers at once; the sources must then be independent
        streams (``open`` is called in a worker thread) and ``progress`` may be called from any of them,
        never two at a time. On any failure no layer of this image stays pending.

        ``index_now=False`` (a pull) only fetches each layer blob and checks its digest; a layer whose
        blob the store holds already is not read at all. Its diff_id is checked and its index made on first
        use (:func:`~layerkit.engine.layer.fetch_layer`).

        In a batch made with ``defer=True`` (and ``workers`` 1) the new layers are only noted here and read
        by :meth:`commit`, all of the batch in archive order."""
        self._tags += len(tags)
        if self._tags > MAX_TAGS:
            raise InvalidManifest(f"{label}: more than {MAX_TAGS} tags in one load")
        image_id = sha256_bytes(config_bytes)
        if expected_id and image_id != expected_id:
            raise DigestMismatch(f"{label}: config hashes to {image_id}, expected {expected_id}")
        config = parse_config(config_bytes, label)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(layers):
            raise InvalidManifest(f"{label}: config lists {len(diff_ids)} diff_ids but the manifest has "
                                  f"{len(layers)} layers")
        # Docker's 127 limits what mounts an image (create, run, commit), not what is stored: Podman, skopeo
        # and dive read deeper images and the OCI spec sets no limit. A bound still holds hostile input: a
        # union view costs time per layer.
        if len(layers) > MAX_STORED_LAYERS:
            raise MaxDepthExceeded(f"{label}: {len(layers)} layers, layerkit reads images of at most "
                                   f"{MAX_STORED_LAYERS}")
        entries: list[NewLayer | str] = []  # a str is the diff_id of a layer ingested below
        todo: dict[str, LayerSource] = {}
        for src, diff_id in zip(layers, diff_ids, strict=True):
            res = self._pending.get(diff_id)
            if res is not None:
                entries.append(NewLayer(res.digest, diff_id, oci_layer_type(res.compression),
                                        res.compressed_size))
                continue
            if diff_id in todo or diff_id in self._deferred:  # the same layer twice: read once
                entries.append(diff_id)
                continue
            have = self._blobs.get(src.digest or "") if not index_now else None
            if have is not None and self.store.blobs.has(src.digest):
                entries.append(NewLayer(src.digest, diff_id, have[0], have[1]))
                if progress:
                    progress(_exists(src, diff_id))
                continue
            hit = self._known.get(diff_id)
            if hit is not None and self.store.blobs.has(hit[0]):
                entries.append(NewLayer(hit[0], diff_id, hit[1], hit[2]))
                if progress:
                    progress(_exists(src, diff_id))
                continue
            if self._defer and workers <= 1:
                self._deferred[diff_id] = (src, progress)
                entries.append(diff_id)
                continue
            if workers <= 1:
                res = self._ingest(src, diff_id, index_now=index_now)
                self._pending[diff_id] = res
                entries.append(NewLayer(res.digest, diff_id, oci_layer_type(res.compression),
                                        res.compressed_size))
                if progress:
                    progress(_done(src, diff_id, res))
                continue
            todo[diff_id] = src
            entries.append(diff_id)
        if todo:
            self._pending.update(self._ingest_all(todo, workers, progress, index_now))
        self._images.append((config_bytes, entries, tags, manifest_bytes))

    def _ingest(self, src: LayerSource, diff_id: str, cancel: threading.Event | None = None,
                index_now: bool = True) -> IngestResult:
        """Stream one layer into a temporary blob and verify it (the writer is not committed)."""
        res = None
        self._check_space(src)
        try:
            with src.open() as f:
                stream = f if cancel is None else _Cancellable(f, cancel)
                if index_now or not src.digest:
                    res = ingest_layer(self.store.blobs, stream, label=src.label, limit=src.size,
                                       expected_digest=src.digest, expected_diff_id=diff_id)
                else:
                    res = fetch_layer(self.store.blobs, stream, label=src.label, diff_id=diff_id,
                                      expected_digest=src.digest, limit=src.size)
        except BaseException:
            if res is not None:  # verified, but closing the source failed
                res.writer.abort()
            raise
        return res

    def _ingest_all(self, todo: dict[str, LayerSource], workers: int,
                    progress: Progress | None, index_now: bool = True
                    ) -> dict[str, IngestResult]:
        """Ingest these layers on up to ``workers`` threads, all or none: on the first failure the
        others are stopped, every temporary blob is dropped and that failure is raised."""
        cancel = threading.Event()
        lock = threading.Lock()
        done: dict[str, IngestResult] = {}

        def one(diff_id: str, src: LayerSource) -> None:
            if cancel.is_set():
                raise _Cancelled
            res = self._ingest(src, diff_id, cancel, index_now)
            try:
                res.writer.sync()  # in the worker, overlapping the other layers' work
            except BaseException:
                res.writer.abort()
                raise
            with lock:
                if cancel.is_set():  # the batch gave up meanwhile: nobody will commit or abort this one
                    res.writer.abort()
                    raise _Cancelled
                done[diff_id] = res
                if progress:
                    progress(_done(src, diff_id, res))

        # largest first: the biggest layer is the longest chain of work, so it must not start last
        order = sorted(todo.items(), key=lambda kv: -(kv[1].size or 0))
        error: BaseException | None = None
        futures = []
        pool = ThreadPoolExecutor(max_workers=min(workers, len(order)), thread_name_prefix="layerkit-ingest")
        try:
            futures = [pool.submit(one, diff_id, src) for diff_id, src in order]
            pending = set(futures)
            while pending and error is None:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    exc = f.exception()
                    if exc is not None and not isinstance(exc, _Cancelled):
                        error = exc
                        break
        except BaseException as exc:  # interrupted while waiting
            error = exc
        finally:
            if error is not None:
                cancel.set()
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True)
            if error is not None:
                with lock:
                    for res in done.values():
                        res.writer.abort()
                    done.clear()
        if error is not None:
            raise error
        return {diff_id: done[diff_id] for diff_id in todo}

    def _check_space(self, src: LayerSource) -> None:
        """Refuse a layer that cannot fit on the store's file system before writing any of it."""
        if not src.size:
            return
        self.store.blobs.ensure()
        free = shutil.disk_usage(self.store.blobs.tmp_dir).free
        if src.size > free:
            raise LayerkitError(f"{src.label}: {src.size} bytes, but the store's file system has {free} free")

    def _ingest_deferred(self) -> None:
        """Read the deferred layers, in the order they lie in their archive."""
        todo = sorted(self._deferred.items(), key=lambda kv: -1 if kv[1][0].offset is None else kv[1][0].offset)
        for diff_id, (src, progress) in todo:
            res = self._ingest(src, diff_id)
            self._pending[diff_id] = res
            del self._deferred[diff_id]
            if progress:
                progress(_done(src, diff_id, res))

    def commit(self) -> list[tuple[Image, list[Reference]]]:
        """Everything verified: make the blobs visible, then record all the images at once, in order."""
        self._ingest_deferred()
        images = []
        for config_bytes, entries, tags, manifest_bytes in self._images:
            layers = []
            for e in entries:
                if isinstance(e, str):
                    res = self._pending[e]
                    e = NewLayer(res.digest, e, oci_layer_type(res.compression), res.compressed_size)
                layers.append(e)
            images.append(NewImage(config_bytes, layers, tags, manifest_bytes=manifest_bytes))
        pending = list(self._pending.values())
        self._pending = {}
        done = 0
        try:
            for res in pending:
                # every blob written and fsynced (behind, by its writer's thread) before any is renamed:
                # a late write error (a full disk) then leaves nothing of the batch visible
                res.writer.sync()
            for res in pending:
                res.writer.commit()
                done += 1
                if res.index is not None:
                    self.store.save_layer_index(res.index, res.digest)
        except BaseException:
            for res in pending[done:]:
                res.writer.abort()
            raise
        return self.store.add_images(images) if images else []

    def abort(self) -> None:
        """Drop every temporary blob of the batch."""
        for res in self._pending.values():
            res.writer.abort()
        self._pending = {}
        self._deferred = {}
        self._images = []


def _exists(src: LayerSource, diff_id: str) -> ProgressEvent:
    """The event of a layer the store holds already (nothing read)."""
    return ProgressEvent("layer", src.digest or diff_id, 0, src.size, Status.EXISTS)


def _done(src: LayerSource, diff_id: str, res: IngestResult) -> ProgressEvent:
    """The event of a layer read and verified."""
    return ProgressEvent("layer", src.digest or diff_id, res.compressed_size, res.compressed_size, Status.DONE)


def _store_layers(store: Store) -> tuple[dict[str, tuple[str, str, int]], dict[str, tuple[str, int]]]:
    """What :meth:`Store.known_layers` and :meth:`Store.layer_blobs` say, from one pass over the store's
    images (each call reads every manifest and config of the store)."""
    known: dict[str, tuple[str, str, int]] = {}
    blobs: dict[str, tuple[str, int]] = {}
    for img in store.images():
        for layer in img.layers:
            blobs[layer.digest] = (layer.media_type, layer.compressed_size)
            if layer.diff_id not in known and store.checked_diff_id(layer.digest) == layer.diff_id:
                known[layer.diff_id] = (layer.digest, layer.media_type, layer.compressed_size)
    return known, blobs


def import_image(
    store: Store,
    config_bytes: bytes,
    layers: list[LayerSource],
    tags: list[Reference],
    label: str,
    expected_id: str | None = None,
    progress: Progress | None = None,
    manifest_bytes: bytes | None = None,
    workers: int = 1,
    index_now: bool = True,
) -> tuple[Image, list[Reference]]:
    """Stream the layers of one image into the store, verify everything, then record it with its tags
    (``workers`` and ``index_now``: see :meth:`ImportBatch.add`)."""
    with ImportBatch(store) as batch:
        batch.add(config_bytes, layers, tags, label, expected_id=expected_id, progress=progress,
                  manifest_bytes=manifest_bytes, workers=workers, index_now=index_now)
        return batch.commit()[0]

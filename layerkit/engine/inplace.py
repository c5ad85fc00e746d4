"""Images analysed where they lie: layer indexes built from layer streams, kept in memory, never stored.

:class:`InPlaceIndexes` is the :class:`~layerkit.engine.image.IndexProvider` of an image that is not in the
store (an archive, a layout, a registry): its layers are read through openers (one callable per layer blob,
returning a binary stream), indexed with the same tar reader and rules as ``load`` (:mod:`.tarstream`,
:func:`.layer.index_tar_columns`: hostile input is refused with the same one-line errors), and the indexes
live as long as the object does. Nothing is written anywhere.

How a layer is read (:func:`index_layer_stream`):

- an uncompressed layer in a seekable stream (a member of an archive file, a blob of a layout): only its
  tar headers are read; file contents are skipped with a seek, so a 1.1 GB layer costs what its headers
  cost (``benchmarks/inplace_bench.py``);
- a gzip or zstd layer, or any layer of a forward-only stream (a registry, a member of a gzipped archive):
  inflated as a stream with the bounded inflater ``load`` uses (:func:`.layer.blob_tar_reader`), a chunk at
  a time, and dropped. A forward-only layer is indexed the first time it is opened
  (:meth:`InPlaceIndexes.compression`), so it is read once.

Uncompressed layers are indexed one after the other in the calling thread (parsing headers holds the GIL),
compressed ones on worker threads meanwhile (inflating releases it). Memory is the indexes (a few hundred
bytes per entry) and 1 MiB buffers, whatever size a layer claims.

What in-place analysis does not do, unlike ``load``: it does not hash the layers, so a layer's content is
not checked against the config's ``diff_ids`` nor against its blob digest; the diff_ids shown are the
config's and the digests the source's. File reads (``cat``, ``compare``) go back to the source
(:attr:`InPlaceIndexes.blobs`), so the source must stay open while the image is used.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ..errors import BlobNotFound, LayerkitError
from .layer import blob_tar_reader, detect_compression, index_tar_columns, iter_chunks, layer_workers, tar_error
from .layerindex import LayerIndex
from .mediatypes import compression_of
from .tarstream import ChunkReader, FileReader

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image, Layer
    from .union import UnionView

PREFIX_VIEWS = 4  # union views of layer prefixes kept (as the store keeps them)


@dataclass
class LayerBlob:
    """Where one layer blob of an in-place image is read from: ``open()`` returns a fresh binary stream of
    the blob (seekable for an archive member or a layout file); ``size`` is its length when the source
    knows it; ``label`` names the layer in errors (``ARCHIVE: LAYER``)."""

    open: Callable[[], BinaryIO]
    label: str
    size: int | None = None


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _SizedFileReader(FileReader):
    """:class:`~.tarstream.FileReader` over a stream whose length is known (an archive member): skips are
    bounded by that length without reading the last byte of each skipped member, as over a plain file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        super().__init__(f)
        self._size = size


class _Counting:
    """Counts the uncompressed bytes :func:`.layer.blob_tar_reader` hands on (the layer's tar size) where
    ``load`` hashes them: in place nothing is hashed."""

    def __init__(self) -> None:
        self.total = 0

    def update(self, data: bytes) -> None:
        self.total += len(data)


def _counted(chunks: Iterator[bytes], count: _Counting) -> Iterator[bytes]:
    for c in chunks:
        count.update(c)
        yield c


class _Rewindable(io.RawIOBase):
    """A forward-only stream (an HTTP body) made to look seekable to the readers that need it: the first
    bytes read are kept so ``seek(0)`` after the compression check works, and a forward seek reads and
    drops. A backward seek past what is kept is refused."""

    HEAD = 64

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self._f = f
        self._head = b""
        self._pos = 0  # position in the stream as the reader sees it
        self._under = 0  # bytes read from ``f``

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        if self._pos < len(self._head):
            data = self._head[self._pos:self._pos + n]
            self._pos += len(data)
            return data
        data = self._f.read(n)
        if self._under < self.HEAD:
            self._head += data[:self.HEAD - self._under]
        self._under += len(data)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise io.UnsupportedOperation("the end of a forward-only stream is not known")
        if pos <= len(self._head) and self._under <= len(self._head):
            self._pos = pos
            return pos
        if pos < self._pos:
            raise io.UnsupportedOperation("cannot seek backward in a forward-only stream")
        while self._pos < pos:
            if not self.read(min(1 << 20, pos - self._pos)):
                break
        return self._pos

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def open_blob(blob: LayerBlob) -> BinaryIO:
    """The layer blob's stream, seekable: a forward-only stream is wrapped (seeking forward reads)."""
    f = blob.open()
    return f if _seekable(f) else _Rewindable(f)


def index_layer_stream(f: BinaryIO, label: str, diff_id: str, size: int | None = None) -> LayerIndex:
    """Index the layer blob read from ``f`` (plain tar, gzip or zstd), labelling it ``diff_id`` unchecked.

    A plain tar in a seekable stream is indexed header by header, seeking over contents (``size``: the
    blob's length when known, which spares a read per skipped member); anything else is read once as a
    stream, inflated a chunk at a time. Header checksums are always checked: unlike a stored blob, nothing
    here vouches for the bytes. Errors are those of ``load``: one line naming ``label``."""
    if not _seekable(f):
        f = _Rewindable(f)
    try:
        start = f.tell()
        head = f.read(4)
        f.seek(start)
    except (OSError, ValueError) as exc:
        raise tar_error(label, exc) from None
    count = None
    if detect_compression(head) != "tar":
        count = _Counting()
        reader: ChunkReader | FileReader = blob_tar_reader(f, count)
    elif isinstance(f, _Rewindable):  # forward only: read through, never seek
        count = _Counting()
        reader = ChunkReader(_counted(iter_chunks(f), count))
    else:
        reader = _SizedFileReader(f, start + size) if size is not None else FileReader(f)
    cols = index_tar_columns(reader, label, verify=True)
    try:
        reader.drain()  # an inflated layer's tar size counts what follows the end-of-archive marker
    except Exception as exc:  # the source's own errors too (see tar_error)
        raise tar_error(label, exc) from None
    if count is not None:
        tar_size = count.total
    elif size is not None:
        tar_size = size
    else:
        tar_size = f.seek(0, 2) - start
    docker_size, files = cols.docker_size()
    return LayerIndex(diff_id, tar_size, docker_size, files, columns=cols)


def _plain(media_type: str) -> bool:
    """Whether a layer of this media type is an uncompressed tar (unknown types count as compressed)."""
    try:
        return compression_of(media_type) == "tar"
    except LayerkitError:
        return False


class _Blobs:
    """What the content readers (:func:`.content.iter_entry_bytes`) ask a blob store for: ``open(digest)``."""

    def __init__(self, owner: InPlaceIndexes) -> None:
        self._owner = owner

    def open(self, digest: str) -> BinaryIO:
        """A seekable stream of the layer blob ``digest``, read from the source."""
        blob = self._owner.layers.get(digest)
        if blob is None:
            raise BlobNotFound(f"blob {digest} not found in {self._owner.label}")
        return open_blob(blob)

    def size(self, digest: str) -> int:
        """The blob's length (as the source gives it; 0 when it does not)."""
        blob = self._owner.layers.get(digest)
        if blob is None:
            raise BlobNotFound(f"blob {digest} not found in {self._owner.label}")
        return blob.size or 0

    def has(self, digest: str) -> bool:
        """Whether the source holds this layer blob."""
        return digest in self._owner.layers


class InPlaceIndexes:
    """The :class:`~.image.IndexProvider` of images read in place, and what the analyses ask the store for
    besides (``image_view``, ``blobs``, ``diff_id_users``), answered from ``layers`` alone.

    ``layers`` maps each layer's blob digest (as the image's manifest names it) to its :class:`LayerBlob`.
    Indexes are built on first use, several layers at once (:func:`.layer.layer_workers` threads: inflating
    releases the GIL), and kept in memory only."""

    def __init__(self, layers: dict[str, LayerBlob], label: str) -> None:
        self.layers = layers
        self.label = label
        self.blobs = _Blobs(self)
        self._indexes: dict[str, LayerIndex] = {}
        self._lock = threading.Lock()
        self._views: dict[tuple[str, int], UnionView] = {}

    def layer_index(self, diff_id: str, digest: str | None = None) -> LayerIndex:
        """The index of the layer whose blob is ``digest`` (labelled with the config's ``diff_id``)."""
        if digest is None or digest not in self.layers:
            raise LayerkitError(f"layer {diff_id} is not in {self.label}")
        key = f"{digest} {diff_id}"
        idx = self._indexes.get(key)
        if idx is None:
            blob = self.layers[digest]
            f = open_blob(blob)
            try:
                idx = index_layer_stream(f, blob.label, diff_id, blob.size)
            finally:
                f.close()
            with self._lock:
                idx = self._indexes.setdefault(key, idx)
        return idx

    def compression(self, digest: str, diff_id: str) -> str:
        """The layer blob's compression (``tar``, ``gzip``, ``zstd``) from its first bytes.

        A forward-only stream (a member of a gzipped archive, read in a pass of its own) is indexed on the way,
        so that it is read once: asking its compression, then its index, would inflate the archive again."""
        blob = self.layers[digest]
        f = blob.open()
        try:
            if _seekable(f):
                return detect_compression(f.read(4))
            f = _Rewindable(f)
            kind = detect_compression(f.read(4))
            f.seek(0)
            idx = index_layer_stream(f, blob.label, diff_id, blob.size)
            with self._lock:
                self._indexes.setdefault(f"{digest} {diff_id}", idx)
            return kind
        except OSError as exc:
            raise tar_error(blob.label, exc) from None
        finally:
            f.close()

    def index_layers(self, layers: list[Layer]) -> None:
        """Index the layers not indexed yet: compressed ones on :func:`.layer.layer_workers` threads (inflating
        releases the GIL), uncompressed ones meanwhile in this thread, one after the other (parsing headers
        holds the GIL: on a 100,000-file archive, two threads parsing took 2.1-2.5 s against 1.7-2.2 s for
        one, inplace_bench's small archive)."""
        todo = {f"{la.digest} {la.diff_id}": la for la in layers if f"{la.digest} {la.diff_id}" not in self._indexes
                and la.digest in self.layers}
        plain = [la for la in todo.values() if _plain(la.media_type)]
        packed = sorted((la for la in todo.values() if not _plain(la.media_type)),
                        key=lambda la: -(self.layers[la.digest].size or 0))  # the longest first
        if len(packed) < 2 and not (packed and plain):
            plain, packed = plain + packed, []
        pool = ThreadPoolExecutor(max_workers=min(len(packed), layer_workers()),
                                  thread_name_prefix="layerkit-inplace") if packed else None
        try:
            futures = [pool.submit(self.layer_index, la.diff_id, la.digest) for la in packed] if pool else []
            for la in plain:
                self.layer_index(la.diff_id, la.digest)
            for fut in futures:
                fut.result()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def ancestry(self, image: Image) -> list[Image]:
        """Only the image itself: a source records no parents."""
        return [image]

    def diff_id_users(self) -> dict[str, list[Image]]:
        """No other image shares layers with an image read in place (``layers``' SHARED BY column)."""
        return {}

    def image_view(self, image: Image, layer: int | None = None) -> UnionView:
        """The union view of the image's layers (``layer``: of the layers up to that one), as
        :meth:`~.store.Store.image_view` gives it."""
        from .union import UnionView

        n = len(image.layers)
        if layer is not None and layer != n - 1 and not 0 <= layer < n:
            raise LayerkitError(f"{image.name} has no layer {layer}: its layers are 0 to {n - 1}")
        top = n if layer is None else layer + 1
        key = (image.id, top)
        view = self._views.get(key)
        if view is None:
            self.index_layers(image.layers)
            view = UnionView([la.index() for la in image.layers[:top]])
            self._views[key] = view
            while len(self._views) > PREFIX_VIEWS + 1:
                del self._views[next(iter(self._views))]
        return view


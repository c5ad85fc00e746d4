"""Layer blobs: reading them in one streaming pass, and the per-layer index of tar entries.

A layer is a tar changeset (OCI image-spec ``layer.md``), stored as it came (plain tar, gzip or zstd).
Ingesting one reads the blob exactly once: the compressed bytes are hashed and written to a temporary
blob, the uncompressed bytes are hashed (the diff_id) and parsed as a tar stream whose headers become the
layer's index (path, type, size, mode, owner, mtime, link target and the offset of the file's data in the
uncompressed tar). An uncompressed blob is its own tar, so its digest is its diff_id and each byte is hashed
once. The blob is written and fsynced behind, by a thread of its writer (:mod:`.blobs`), while the reading
thread hashes and indexes. Nothing holds more than a few chunks of the layer in memory.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import posixpath
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import (
    DigestMismatch,
    InvalidArchive,
    LayerFormatError,  # noqa: F401 - defined there, named here too
    LayerkitError,
)
from .blobs import CHUNK, BlobStore
from .layerindex import OPAQUE_MARKER, WHITEOUT_PREFIX, Columns, Entry, LayerIndex
from .mediatypes import compression_of as media_type_compression  # noqa: F401 - formats/registry's name
from .tarstream import ChunkReader, FileReader, Header, TarFormatError, TarReader, iter_headers

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def detect_compression(head: bytes) -> str:
    """Guess a blob's compression from its first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "tar"


def normalize_member_path(name: str) -> str:
    """Turn a tar member name into an absolute, clean path (``./etc/`` -> ``/etc``).

    Raises :class:`LayerFormatError` when the name climbs above the root, since applying such a layer
    would write outside the container's filesystem.
    """
    p = name.lstrip("/")
    q = "/" + p.rstrip("/") + "/"
    if p and "//" not in q and "/./" not in q and "/../" not in q:
        return q[:-1]  # already clean: skip normpath, which costs more than parsing the header
    norm = posixpath.normpath(p) if p else "."
    if norm == ".." or norm.startswith("../"):
        raise LayerFormatError(f"tar entry {name!r} points outside the root")
    if norm == ".":
        return "/"
    return "/" + norm


class _Counter:
    """Bytes seen so far on one side of the pipeline."""

    def __init__(self) -> None:
        self.total = 0


def _tee_chunks(src: BinaryIO, sink: Callable[[bytes], None], limit: int | None, count: _Counter
                ) -> Iterator[bytes]:
    """Read ``src`` (up to ``limit`` bytes) in large chunks, passing each to ``sink`` (the blob writer)."""
    remaining = limit
    while remaining is None or remaining > 0:
        data = src.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not data:
            return
        sink(data)
        count.total += len(data)
        if remaining is not None:
            remaining -= len(data)
        yield data


INFLATE_OUT = 1 << 20  # the most one decompress call may return
ZSTD_WINDOW_LOG_MAX = 27  # 128 MiB: what ``zstd -d`` accepts without --long or --memory


def _decompressor(kind: str):
    """A new one-member (gzip) or one-frame (zstd) decompressor whose calls take ``max_length``.

    gzip: ISA-L's ``IgzipDecompressor``, which checks the member's CRC-32 and length like zlib and, on a
    115 MB layer, inflated in 0.185 s against 0.262 s for isal's zlib-style ``decompressobj`` and 0.55 s
    for zlib. zstd: the standard library's ``compression.zstd`` (its backport before Python 3.14), as
    fast as ``zstandard`` here (0.14-0.20 s for the same layer, 0.17 s), because ``zstandard``'s
    ``decompressobj`` has no output bound and its bounded readers (``stream_reader``, ``read_to_iter``)
    return a truncated frame's output with no error. A frame that needs a window larger than
    2**ZSTD_WINDOW_LOG_MAX is refused instead of allocated.
    """
    if kind == "gzip":
        try:
            from isal.igzip_lib import DECOMP_GZIP, IgzipDecompressor
        except ImportError:  # pragma: no cover - isal is a declared dependency; stdlib is the fallback
            return _ZlibGzip()
        return IgzipDecompressor(flag=DECOMP_GZIP)
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        from backports import zstd
    return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX})


class _ZlibGzip:  # pragma: no cover - used only without isal
    """zlib's gzip inflater behind the ``max_length`` / ``needs_input`` API of bz2 and ISA-L."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)
        self._tail = b""
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._d.decompress(self._tail + data, max_length)
        self._tail = self._d.unconsumed_tail
        self.needs_input = not self._tail and len(out) < max_length
        return out


def _inflate(chunks: Iterator[bytes], kind: str) -> Iterator[bytes]:
    """Decompress a chunk stream (gzip members and zstd frames may be concatenated).

    Every decompress call returns at most :data:`INFLATE_OUT` bytes, so a bomb costs time, never memory.
    A stream that ends inside a member or frame, or a corrupt one, raises :class:`InvalidArchive`.
    """
    if kind == "tar":
        yield from chunks
        return
    d = None  # None between members/frames
    for chunk in chunks:
        while chunk or (d is not None and not d.needs_input and not d.eof):
            if d is None:
                d = _decompressor(kind)
            try:
                out = d.decompress(chunk, INFLATE_OUT)
            except Exception as exc:  # zlib.error, EOFError, isal's IsalError, zstd's ZstdError
                raise InvalidArchive(f"corrupt {kind} stream ({exc})") from exc
            chunk = b""
            if out:
                yield out
            if d.eof:
                chunk = d.unused_data  # the next gzip member or zstd frame starts here
                d = None
    if d is not None:
        raise InvalidArchive(f"truncated {kind} stream")


def _hashed(chunks: Iterator[bytes], h, count: _Counter) -> Iterator[bytes]:
    for c in chunks:
        h.update(c)
        count.total += len(c)
        yield c


# tar type flags -> the type codes of the index columns (layerindex.TYPE_CODES)
_CODES_B = {b"0": "f", b"7": "f", b"5": "d", b"2": "l", b"1": "h", b"3": "c", b"4": "b", b"6": "p"}
_NO_FILE = frozenset((b"V", b"M", b"N"))  # GNU volume labels and multi-volume markers carry no file
# The deepest path a layer may hold. Linux's PATH_MAX allows 2048 levels, but a tree deeper than about
# 900 breaks every recursive walk in Python (shutil.rmtree of an extracted layer raises RecursionError),
# and real images stay far below this (deep node_modules trees reach a few dozen levels).
MAX_DEPTH = 256


def whiteout_target(base: str, name: str) -> str:
    """The name a ``.wh.NAME`` marker deletes; :class:`LayerFormatError` naming the entry ``name`` when the
    target is empty, ``.``, ``..`` or itself a marker (whose whiteout could delete a parent)."""
    target = base[len(WHITEOUT_PREFIX):]
    if not target or target in (".", "..") or target.startswith(WHITEOUT_PREFIX):
        raise LayerFormatError(f"malformed whiteout entry {name!r}")
    return target


def classify(h: Header) -> tuple[str, str, str] | None:
    """What a tar member is in a layer: ``(path, type code, link)``, or None for a member that carries no
    file (the root directory, GNU volume labels).

    The one rule both the index and extraction follow, so they always agree: ``path`` is the member's
    clean absolute path (a whiteout or opaque marker keeps its own path), the code is one of
    ``layerindex.TYPE_CODES``, ``link`` is a symlink's target as written or a hardlink's clean path.
    Raises :class:`LayerFormatError` for paths that climb out of the root or nest deeper than
    :data:`MAX_DEPTH`, malformed whiteouts and types no layer can hold.
    """
    path = normalize_member_path(h.name)
    if len(path) > 2 * MAX_DEPTH and path.count("/") > MAX_DEPTH:
        raise LayerFormatError(f"tar entry {h.name[:200]!r}... is more than {MAX_DEPTH} directories deep")
    base = path[path.rfind("/") + 1:]
    if base.startswith(WHITEOUT_PREFIX):
        if base == OPAQUE_MARKER:
            return path, "o", ""
        whiteout_target(base, h.name)
        return path, "w", ""
    if path == "/":
        return None  # the root itself is not listed
    code = _CODES_B.get(h.type)
    if code is None:
        if h.type in _NO_FILE:
            return None
        raise LayerFormatError(f"tar entry {h.name!r} has unsupported type {h.type!r}")
    if code == "l":
        return path, code, h.linkname
    if code == "h":
        return path, code, normalize_member_path(h.linkname)
    return path, code, ""


# failures to write a blob: of the host, not of the layer (the blob writer names the layer in them)
_WRITE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS))


def tar_error(label: str, exc: BaseException) -> LayerkitError | OSError:
    """The one-line error for a failure while reading layer ``label``'s tar stream (a failure to write the
    blob meanwhile, a full disk, is passed on as it is)."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return exc
    if isinstance(exc, LayerFormatError):
        return LayerFormatError(f"{label}: {exc}")
    if isinstance(exc, TarFormatError):
        return InvalidArchive(f"{label}: not a valid tar stream ({exc})")
    if isinstance(exc, InvalidArchive):
        return InvalidArchive(f"{label}: {exc}")
    if isinstance(exc, LayerkitError):
        return exc
    return InvalidArchive(f"{label}: cannot read layer ({exc})")


# The index holds every entry in memory (about 400 bytes each: 300,000 empty entries, a 3 MB gzip layer, cost
# 135 MB). Real layers hold up to a few hundred thousand files; a hostile one of tens of millions of empty
# entries weighs little compressed. This bounds what one layer can cost (about 0.8 GB).
MAX_ENTRIES = 2_000_000


def index_tar_columns(reader: ChunkReader | FileReader, label: str, verify: bool = True,
                      progress: Callable[[int], None] | None = None) -> Columns:
    """Parse a tar stream's headers into index columns (see :mod:`.tarstream` for why not ``tarfile``).

    Appends straight to the columns: no object per entry. The same path may appear twice in a tar; the
    later entry wins, as it would when applied.
    """
    paths: list[str] = []
    codes: list[str] = []
    sizes: list[int] = []
    modes: list[int] = []
    uids: list[int] = []
    gids: list[int] = []
    mtimes: list[float] = []
    links: list[str] = []
    offsets: list[int] = []
    try:
        for h in iter_headers(reader, verify):
            c = classify(h)
            if c is None:
                continue
            path, code, link = c
            paths.append(path)
            codes.append(code)
            sizes.append(h.size if code == "f" else 0)
            modes.append(h.mode & 0o7777)
            uids.append(h.uid)
            gids.append(h.gid)
            mtimes.append(h.mtime)
            links.append(link)
            offsets.append(h.offset_data)
            if len(paths) % 2000 == 0:
                if len(paths) > MAX_ENTRIES:
                    raise LayerFormatError(f"more than {MAX_ENTRIES} entries in one layer")
                if progress is not None:
                    progress(reader.offset)
    except Exception as exc:  # a network source raises its library's own errors
        raise tar_error(label, exc) from exc
    return Columns.from_rows(paths, codes, sizes, modes, uids, gids, mtimes, links, offsets)


def index_tar_stream(reader: ChunkReader | FileReader, label: str, verify: bool = True,
                     progress: Callable[[int], None] | None = None) -> list[Entry]:
    """The entries of a tar stream, in tar order (:func:`index_tar_columns` as objects)."""
    cols = index_tar_columns(reader, label, verify, progress)
    return [cols.entry(k) for k in range(len(cols))]


def docker_size(entries: list[Entry]) -> tuple[int, int]:
    """Docker's layer size (regular files, hardlinks once, symlink target lengths) and the file count."""
    return Columns.from_entries(entries).docker_size()


def _blob_chunks(src: BinaryIO, writer, limit: int | None, raw: _Counter) -> tuple[str, Iterator[bytes]]:
    """The blob's compression (from its first chunk) and its chunks as they are read from ``src``; each
    chunk is written to ``writer`` and counted in ``raw`` as it is read (at most ``limit`` bytes)."""
    head = src.read(min(CHUNK, limit) if limit is not None else CHUNK)
    compression = detect_compression(head)
    if head:
        writer.write(head)
        raw.total += len(head)
    rest = _tee_chunks(src, writer.write, None if limit is None else limit - len(head), raw)
    return compression, itertools.chain([head] if head else [], rest)


def _checked_blob(writer, raw: _Counter, label: str, limit: int | None, expected_digest: str | None) -> str:
    """The digest of the blob written, once its length and digest are what was expected."""
    if limit is not None and raw.total != limit:
        raise InvalidArchive(f"{label}: truncated ({raw.total} of {limit} bytes)")
    digest = writer.current_digest()
    if expected_digest and digest != expected_digest:
        raise DigestMismatch(f"{label}: blob {expected_digest} hashes to {digest}")
    return digest


def layer_workers(most: int = 4) -> int:
    """How many layers to inflate and index at once: one per core this process may use, at least 2 (one
    layer's waits overlap another's work) and at most ``most``. Inflating and hashing release the GIL;
    tar header parsing does not, so more threads than cores only add contention."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(2, min(most, cores))


@dataclass
class IngestResult:
    """The outcome of streaming one layer blob into the store."""

    digest: str
    diff_id: str
    compressed_size: int
    compression: str
    index: LayerIndex | None  # None: fetched only (:func:`fetch_layer`), indexed on first use
    writer: object  # the uncommitted BlobWriter; the caller commits or aborts it


def ingest_layer(
    blobs: BlobStore,
    src: BinaryIO,
    *,
    label: str,
    limit: int | None = None,
    expected_digest: str | None = None,
    expected_diff_id: str | None = None,
) -> IngestResult:
    """Stream a layer blob from ``src`` into a temporary blob, hashing and indexing it in one pass.

    Verifies ``expected_digest`` (the blob) and ``expected_diff_id`` (the uncompressed tar) and raises
    :class:`DigestMismatch` naming ``label`` when either differs. The returned writer is not committed.
    """
    # the blob is written (and fsynced) behind, by the writer's thread, while this one hashes and indexes;
    # directly, around the page cache: its index is made here, so nothing reads it back soon
    writer = blobs.writer(expected_digest, label, background=True)
    try:
        raw = _Counter()
        compression, chunks = _blob_chunks(src, writer, limit, raw)
        if compression == "tar":
            # the blob is the tar: its digest is the diff_id, so each byte is hashed once (by the writer)
            diff_hash = tar_count = None
            reader = ChunkReader(chunks)
        else:
            diff_hash = hashlib.sha256()
            tar_count = _Counter()
            reader = ChunkReader(_hashed(_inflate(chunks, compression), diff_hash, tar_count))
        cols = index_tar_columns(reader, label)
        try:
            # what follows the end-of-archive marker still belongs to the diff_id: hashed chunk by
            # chunk (each at most INFLATE_OUT bytes), never kept
            reader.drain()
        except Exception as exc:  # the source's own errors too (see tar_error)
            raise tar_error(label, exc) from exc
        digest = _checked_blob(writer, raw, label, limit, expected_digest)
        if diff_hash is None:
            diff_id, tar_size = digest, raw.total
        else:
            diff_id, tar_size = "sha256:" + diff_hash.hexdigest(), tar_count.total
        if expected_diff_id and diff_id != expected_diff_id:
            raise DigestMismatch(f"{label}: layer content hashes to {diff_id}, config says {expected_diff_id}")
        size, files = cols.docker_size()
        index = LayerIndex(diff_id, tar_size, size, files, columns=cols)
        writer.end()  # the rest is written and fsynced behind; commit waits for it
        return IngestResult(digest, diff_id, raw.total, compression, index, writer)
    except BaseException:
        writer.abort()
        raise


def fetch_layer(
    blobs: BlobStore,
    src: BinaryIO,
    *,
    label: str,
    diff_id: str,
    expected_digest: str,
    limit: int | None = None,
) -> IngestResult:
    """Stream a layer blob from ``src`` into a temporary blob, verifying its digest, without inflating it.

    What ``pull`` does, as ``skopeo copy`` into a layout and containerd's content fetch do: the blob is
    checked against the digest that names it; the layer's ``diff_id`` (the config's claim, passed in) is
    checked when the layer is first indexed (:meth:`~layerkit.engine.store.Store.layer_index`). Inflating
    and hashing the tar costs most of a pull's CPU time (a 790 MB image: 2.9 CPU seconds against 1.1
    without), and commands that only move images (``push``, ``save``, ``copy``) never need it.
    """
    # behind, but through the page cache: the layer's first use reads the blob back soon (registry_bench,
    # first use after a pull: 3.30 s when the pull's pages are still cached, 3.65 s after direct writes)
    writer = blobs.writer(expected_digest, label, background=True, direct=False)
    try:
        raw = _Counter()
        compression, chunks = _blob_chunks(src, writer, limit, raw)
        for _ in chunks:
            pass
        digest = _checked_blob(writer, raw, label, limit, expected_digest)
        writer.end()
        return IngestResult(digest, diff_id, raw.total, compression, None, writer)
    except BaseException:
        writer.abort()
        raise


class _HashSink:
    """The writer :func:`_blob_chunks` tees the blob's chunks into, when nothing is written: a hash."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.write = self.hash.update

    def current_digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class LayerStream:
    """One streaming pass over a layer blob that is read, not stored (``scan`` indexes layers in place).

    The blob's bytes are hashed and counted as they are read (at most ``limit``), inflated with the same
    bounded inflater as :func:`ingest_layer` (gzip and zstd, detected from the first bytes) and the tar's
    bytes hashed for the diff_id. ``reader`` is the uncompressed tar for :class:`~.tarstream.TarReader` or
    :func:`index_tar_columns`; :meth:`finish` drains what follows the tar's end and checks the digests.
    Nothing holds more than a few chunks in memory.
    """

    def __init__(self, src: BinaryIO, label: str, limit: int | None = None) -> None:
        self.label = label
        self._limit = limit
        self._sink = _HashSink()
        self._raw = _Counter()
        self.compression, chunks = _blob_chunks(src, self._sink, limit, self._raw)
        if self.compression == "tar":  # the blob is the tar: its digest is the diff_id
            self._tar_hash = self._tar_count = None
            self.reader = ChunkReader(chunks)
        else:
            self._tar_hash, self._tar_count = hashlib.sha256(), _Counter()
            self.reader = ChunkReader(_hashed(_inflate(chunks, self.compression), self._tar_hash,
                                              self._tar_count))

    def finish(self, expected_digest: str | None = None, expected_diff_id: str | None = None
               ) -> tuple[str, str, int, int]:
        """Read to the end; ``(digest, diff_id, compressed_size, tar_size)`` once the blob's length and
        digest, and the tar's diff_id, are what was expected (:class:`DigestMismatch`,
        :class:`InvalidArchive` naming the layer otherwise)."""
        try:
            self.reader.drain()
        except Exception as exc:  # the source's own errors too (see tar_error)
            raise tar_error(self.label, exc) from exc
        digest = _checked_blob(self._sink, self._raw, self.label, self._limit, expected_digest)
        if self._tar_hash is None:
            diff_id, tar_size = digest, self._raw.total
        else:
            diff_id, tar_size = "sha256:" + self._tar_hash.hexdigest(), self._tar_count.total
        if expected_diff_id and diff_id != expected_diff_id:
            raise DigestMismatch(f"{self.label}: layer content hashes to {diff_id}, config says {expected_diff_id}")
        return digest, diff_id, self._raw.total, tar_size



class _Inflated:
    """A read-only file over a compressed blob's uncompressed bytes (see :func:`open_uncompressed`)."""

    def __init__(self, f: BinaryIO, kind: str) -> None:
        self._f = f
        self._r = ChunkReader(_inflate(iter(lambda: f.read(CHUNK), b""), kind))

    def read(self, n: int = -1) -> bytes:
        """Exactly ``n`` bytes, fewer only at the end. An unbounded read is refused: a layer may inflate
        to any size."""
        if n is None or n < 0:
            raise ValueError("read the uncompressed layer in bounded chunks")
        return self._r.read(n)

    def skip(self, n: int) -> int:
        """Skip ``n`` uncompressed bytes without keeping them; returns how many were skipped."""
        return self._r.skip(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Inflated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_uncompressed(f: BinaryIO):
    """Wrap an open layer blob so that reading it yields the uncompressed tar.

    A plain tar is returned as it is; a gzip or zstd blob gets a reader whose ``read(n)`` returns exactly
    ``n`` bytes (fewer at the end) and inflates at most a chunk at a time, raising
    :class:`InvalidArchive` for a truncated or corrupt stream."""
    head = f.read(4)
    f.seek(0)
    kind = detect_compression(head)
    if kind == "tar":
        return f
    return _Inflated(f, kind)


def iter_chunks(f, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield a file's bytes chunk by chunk."""
    while True:
        data = f.read(chunk)
        if not data:
            return
        yield data


def blob_tar_reader(f: BinaryIO, h=None, count: _Counter | None = None) -> ChunkReader | FileReader:
    """The uncompressed tar stream of an open layer blob: a seeking reader over a plain tar, an inflating
    one over gzip or zstd (hashing what it inflates into ``h`` and counting it in ``count`` if given)."""
    head = f.read(4)
    f.seek(0)
    kind = detect_compression(head)
    if kind == "tar":
        return FileReader(f)
    chunks = _inflate(iter_chunks(f), kind)
    if h is not None:
        chunks = _hashed(chunks, h, count if count is not None else _Counter())
    return ChunkReader(chunks)


def stored_verify(reader: ChunkReader | FileReader) -> bool:
    """Whether header checksums are checked when reading a stored blob through ``reader``.

    Not for a plain tar read in place: its bytes hash to the digest that names the blob, which rules out
    the corruption a checksum can detect, and checking costs a sixth of indexing it (union_bench). The
    index and extraction of a stored blob both follow this, so they accept exactly the same members; what
    a member is does not depend on it (:func:`classify`)."""
    return not isinstance(reader, FileReader)


@contextmanager
def open_layer_tar(blobs: BlobStore, digest: str) -> Iterator[TarReader]:
    """The members of a stored layer blob, read with the same reader (and rules) that indexed it."""
    with blobs.open(digest) as f:
        r = blob_tar_reader(f)
        yield TarReader(r, stored_verify(r))


def index_blob(blobs: BlobStore, digest: str, label: str,
               progress: Callable[[int], None] | None = None) -> LayerIndex:
    """Build a layer index from a stored blob (when no cached index exists).

    An uncompressed blob is indexed by seeking from header to header (its diff_id is its digest); a
    compressed one is inflated and hashed in one pass.
    """
    with blobs.open(digest) as f:
        h = hashlib.sha256()
        count = _Counter()
        reader = blob_tar_reader(f, h, count)
        cols = index_tar_columns(reader, label, stored_verify(reader), progress=progress)
        if isinstance(reader, FileReader):
            diff_id, tar_size = digest, blobs.size(digest)
        else:
            try:
                reader.drain()
            except Exception as exc:
                raise tar_error(label, exc) from exc
            diff_id, tar_size = "sha256:" + h.hexdigest(), count.total
    size, files = cols.docker_size()
    return LayerIndex(diff_id, tar_size, size, files, columns=cols)

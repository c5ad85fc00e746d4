"""Reading a file's bytes out of a stored layer, given its index entry (no extraction)."""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import InvalidArchive
from .blobs import CHUNK, BlobStore
from .layer import blob_tar_reader
from .layerindex import Entry
from .tarstream import FileReader


def iter_entry_bytes(blobs: BlobStore, digest: str, entry: Entry, limit: int | None = None) -> Iterator[bytes]:
    """Yield the data of ``entry`` from layer blob ``digest``, chunk by chunk.

    The offset is the one the layer's index recorded (the tar reader's). An uncompressed blob is read at
    that offset directly; a compressed one is inflated up to it, a chunk at a time and without keeping
    what is skipped (gzip and zstd streams cannot be entered in the middle).
    """
    remaining = entry.size if limit is None else min(limit, entry.size)
    with blobs.open(digest) as f:
        r = blob_tar_reader(f)
        try:
            if isinstance(r, FileReader):
                f.seek(entry.offset)
                r = FileReader(f)
            elif r.skip(entry.offset) < entry.offset:
                return
            while remaining > 0:
                data = r.read1(min(CHUNK, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data
        except InvalidArchive as exc:  # a corrupt or truncated compressed stream
            raise InvalidArchive(f"layer {digest}: {exc}") from exc

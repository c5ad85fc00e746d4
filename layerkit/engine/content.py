"""Reading a file's bytes out of a stored layer, given its index entry (no extraction)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from .blobs import CHUNK, BlobStore
from .layer import detect_compression, open_uncompressed
from .layerindex import Entry


def iter_entry_bytes(blobs: BlobStore, digest: str, entry: Entry, limit: int | None = None) -> Iterator[bytes]:
    """Yield the data of ``entry`` from layer blob ``digest``, chunk by chunk.

    An uncompressed blob is read at the recorded offset directly; a compressed one is inflated up to
    the offset (gzip and zstd streams cannot be entered in the middle).
    """
    remaining = entry.size if limit is None else min(limit, entry.size)
    with blobs.open(digest) as f:
        head = f.read(4)
        f.seek(0)
        if detect_compression(head) == "tar":
            f.seek(entry.offset)
            src: BinaryIO = f
        else:
            src = open_uncompressed(f)
            skip = entry.offset
            while skip > 0:
                got = src.read(min(CHUNK, skip))
                if not got:
                    return
                skip -= len(got)
        while remaining > 0:
            data = src.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data

"""Content-addressed blob storage laid out as an OCI image layout's ``blobs/sha256/``.

Every blob is written to a temporary file beside the store (same file system) while its sha256 is
computed, verified against the digest that should name it, fsynced, and only then renamed into place.
A crash at any moment leaves at most a stray temporary file, never a partial blob under its digest name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFound, DigestMismatch
from .digests import hex_of, validate
from .private import private_dir

CHUNK = 1 << 20


class BlobWriter:
    """A blob being written: feed bytes with :meth:`write`, then :meth:`commit` or :meth:`abort`."""

    def __init__(self, store: BlobStore, expected: str | None = None, label: str = "blob") -> None:
        self._store = store
        self.expected = validate(expected) if expected else None
        self.label = label
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-", suffix=".partial")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes to the blob and to its running digest."""
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def current_digest(self) -> str:
        """The digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def sync(self) -> None:
        """fsync what is written so far (a worker can do it before the commit, which then finds little left)."""
        if not self._file.closed:
            os.fsync(self._file.fileno())

    def copy_from(self, src: BinaryIO, limit: int | None = None) -> None:
        """Stream ``src`` (up to ``limit`` bytes) into the blob without holding it in memory."""
        remaining = limit
        while remaining is None or remaining > 0:
            n = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = src.read(n)
            if not chunk:
                break
            self.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)

    def commit(self, fsync: bool = True) -> str:
        """Verify the digest, move the blob into place and return its digest.

        Raises :class:`DigestMismatch` (and removes the temporary file) when the bytes do not hash to the
        expected digest.
        """
        digest = "sha256:" + self._hash.hexdigest()
        self.digest = digest
        try:
            if self.expected and digest != self.expected:
                raise DigestMismatch(
                    f"{self.label} {self.expected}: content hashes to {digest} ({self.size} bytes)"
                )
            if fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            final = self._store.path(digest)
            if final.exists():
                self._tmp.unlink()
            else:
                os.replace(self._tmp, final)
        except BaseException:
            self.abort()
            raise
        return digest

    def abort(self) -> None:
        """Drop the temporary file; nothing becomes visible."""
        try:
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.digest is None:
            self.abort()


class BlobStore:
    """The ``blobs/sha256`` directory of a store, with atomic writes."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp_dir = Path(tmp_dir)

    def ensure(self) -> None:
        """Create the directories."""
        self.dir.mkdir(parents=True, exist_ok=True)
        private_dir(self.tmp_dir, parents=True)  # 0700: see private.py

    def path(self, digest: str) -> Path:
        """Where the blob named ``digest`` lives (it may not exist)."""
        return self.dir / hex_of(digest)

    def has(self, digest: str) -> bool:
        """True if the blob is present."""
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """The blob's size in bytes."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in store") from None

    def open(self, digest: str) -> BinaryIO:
        """Open the blob for reading."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in store") from None

    def read_bytes(self, digest: str) -> bytes:
        """Read a small blob (manifest, config) whole."""
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: str | None = None, label: str = "blob") -> BlobWriter:
        """Start writing a blob; see :class:`BlobWriter`."""
        self.ensure()
        return BlobWriter(self, expected, label)

    def put_bytes(self, data: bytes, expected: str | None = None, label: str = "blob") -> str:
        """Store a small blob and return its digest."""
        w = self.writer(expected, label)
        try:
            w.write(data)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def delete(self, digest: str) -> None:
        """Remove a blob if present."""
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        """All blob digests present."""
        if not self.dir.is_dir():
            return []
        return ["sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64]

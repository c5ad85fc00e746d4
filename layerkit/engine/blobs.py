"""Content-addressed blob storage laid out as an OCI image layout's ``blobs/sha256/``.

Every blob is written to a temporary file beside the store (same file system) while its sha256 is
computed, verified against the digest that should name it, fsynced, and only then renamed into place.
A crash at any moment leaves at most a stray temporary file, never a partial blob under its digest name.

Stray temporary files are attributable: each is ``flock``-ed by the process writing it for as long as it
exists under its temporary name (the lock goes with the process, however it dies), so the first writer of a
later process (:meth:`BlobStore.ensure`) removes every temporary file nobody holds a lock on, and never a
live writer's. A per-file lock rather than a per-process directory: a directory would outlive each
operation of a long-lived process (a notebook) and make every in-process caller clean up after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFound, DigestMismatch
from .digests import hex_of, validate
from .private import private_dir

CHUNK = 1 << 20


def _libc_syncfs():
    """Linux's ``syncfs(fd)`` (flush one file system, not every one as ``os.sync`` does), if there."""
    try:
        import ctypes
        import ctypes.util

        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).syncfs
    except (OSError, AttributeError):  # pragma: no cover - not glibc/Linux
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _libc_syncfs()
# temporary files under tmp/ that a live writer locks: blobs being written and streamed archives (engine_api's
# load). load-*.tar is what earlier versions expanded a gzipped archive to: only killed runs left those.
TEMP_PREFIXES = ("blob-", "stream-", "load-")


def _locked_temp(tmp_dir: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """Create a temporary file and hold an exclusive ``flock`` on it; (fd, path).

    A cleaner (:func:`remove_stale`) may lock and remove a file in the instant between its creation and
    our lock; then the file we locked has no name any more (``st_nlink == 0``) and we try again.
    """
    for _ in range(100):
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=prefix, suffix=suffix)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return fd, Path(name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        os.close(fd)
    raise OSError(f"{tmp_dir}: cannot create a temporary file (removed as soon as made)")


def remove_stale(tmp_dir: Path) -> list[str]:
    """Remove the temporary files under ``tmp_dir`` that no live process holds; returns their names.

    A file is a leftover when nobody holds the ``flock`` its writer takes for as long as the file exists
    (:class:`BlobWriter`, :meth:`BlobStore.temp_file`): the writer was killed. Files whose lock is held are
    a live writer's (another ``load`` into the same store) and stay.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmp_dir))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for e in entries:
        if not e.name.startswith(TEMP_PREFIXES):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, a symlink, or unreadable: not ours to judge
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            # still the file we locked under that name (names are random, but be exact): remove it
            with contextlib.suppress(FileNotFoundError):
                if os.stat(e.path, follow_symlinks=False).st_ino == st.st_ino:
                    os.unlink(e.path)
                    removed.append(e.name)
        finally:
            os.close(fd)  # releases the lock; a writer that waited for it sees st_nlink == 0 and retries
    return removed


class BlobWriter:
    """A blob being written: feed bytes with :meth:`write`, then :meth:`commit` or :meth:`abort`."""

    def __init__(self, store: BlobStore, expected: str | None = None, label: str = "blob") -> None:
        self._store = store
        self.expected = validate(expected) if expected else None
        self.label = label
        fd, self._tmp = _locked_temp(store.tmp_dir, "blob-", ".partial")
        self._file = os.fdopen(fd, "wb", buffering=0)
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
            # renamed or removed while still open and locked: a cleaner never sees it unlocked
            final = self._store.path(digest)
            if final.exists():
                self._tmp.unlink()
            else:
                os.replace(self._tmp, final)
            self._file.close()
        except BaseException:
            self.abort()
            raise
        return digest

    def abort(self) -> None:
        """Drop the temporary file; nothing becomes visible."""
        try:
            if not self._file.closed:
                self._tmp.unlink(missing_ok=True)  # before the lock goes with the descriptor
        finally:
            self._file.close()

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
        self._cleaned = False

    def ensure(self) -> None:
        """Create the directories; the first time in this object, remove what killed writers left in tmp/."""
        self.dir.mkdir(parents=True, exist_ok=True)
        private_dir(self.tmp_dir, parents=True)  # 0700: see private.py
        if not self._cleaned:
            self._cleaned = True
            remove_stale(self.tmp_dir)

    @contextlib.contextmanager
    def temp_file(self, prefix: str = "stream-", suffix: str = ".tmp") -> Iterator[tuple[BinaryIO, Path]]:
        """A temporary file under tmp/ for other large transient data (a streamed archive): (file opened
        ``w+b``, path). It is locked as a :class:`BlobWriter`'s is, so a killed process's file is removed
        by a later one and a live one never; it is removed when the block ends."""
        if not prefix.startswith(TEMP_PREFIXES):
            raise ValueError(f"temporary file prefix {prefix!r} is not one of {TEMP_PREFIXES}")
        self.ensure()
        fd, path = _locked_temp(self.tmp_dir, prefix, suffix)
        f = os.fdopen(fd, "w+b")
        try:
            yield f, path
        finally:
            try:
                path.unlink(missing_ok=True)
            finally:
                f.close()

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

    def put_bytes(self, data: bytes, expected: str | None = None, label: str = "blob", fsync: bool = True) -> str:
        """Store a small blob and return its digest (nothing is written when the store holds it already).

        ``fsync=False`` leaves flushing to the caller, who then calls :meth:`sync` once before anything
        names the blob (writing the configs and manifests of 2,000 images took 8 s of fsyncs one by one).
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if (expected is None or digest == expected) and self.has(digest):
            return digest
        w = self.writer(expected, label)
        try:
            w.write(data)
        except BaseException:
            w.abort()
            raise
        return w.commit(fsync=fsync)

    def sync(self) -> None:
        """Flush every blob written without fsync to disk: one ``syncfs`` of the store's file system."""
        self.ensure()
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def delete(self, digest: str) -> None:
        """Remove a blob if present."""
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        """All blob digests present."""
        if not self.dir.is_dir():
            return []
        return ["sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64]

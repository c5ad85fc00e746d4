"""Content-addressed blob storage laid out as an OCI image layout's ``blobs/sha256/``.

Every blob is written to a temporary file beside the store (same file system) while its sha256 is
computed, verified against the digest that should name it, fsynced, and only then renamed into place.
A crash at any moment leaves at most a stray temporary file, never a partial blob under its digest name.

Stray temporary files are attributable: each is ``flock``-ed by the process writing it for as long as it
exists under its temporary name (the lock goes with the process, however it dies), so the first writer of a
later process (:meth:`BlobStore.ensure`) removes every temporary file nobody holds a lock on, and never a
live writer's. A per-file lock rather than a per-process directory: a directory would outlive each
operation of a long-lived process (a notebook) and make every in-process caller clean up after it.

A large blob (a layer being ingested) can be written behind (``writer(..., background=True)``): the caller
hashes each chunk and hands it to a thread that writes it and, once told the blob is complete, fsyncs it,
while the caller goes on reading, hashing and indexing (the next layer, even). Copying into the page cache
and flushing it are the kernel's work and release the GIL, so on two cores they overlap the hashing instead
of following it (``benchmarks/load_bench.py``: writing and fsyncing were 4.8 s of a 7.1 s load of 1.1 GB
here). Nothing is renamed into place before every byte is written and fsynced and the digest checked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import queue
import stat
import tempfile
import threading
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


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` (``write`` may take fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_END = object()  # the write-behind queue's last item
ALIGN = 4096  # direct I/O wants buffer, length and file offset aligned to the device's block (512 or 4096)
STAGE = 4 << 20  # bytes per direct write


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; False where the file system or platform has none."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:  # pragma: no cover - not Linux
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | flag) if on else (flags & ~flag))
    except OSError:  # EINVAL: a file system without direct I/O (tmpfs before Linux 6.6)
        return False
    return True


class _WriteBehind:
    """A thread that writes the chunks it is handed to ``fd`` in order and, at the end, fsyncs the file.

    It writes with direct I/O where the file system has it: the chunks are gathered in an aligned buffer of
    :data:`STAGE` bytes that goes to the disk without a copy into the page cache, and the last partial
    block is written through the page cache. Every blob is fsynced before it is named anyway, so the page
    cache would only hold pages nobody reads soon; and filling fresh page-cache pages is what made writes
    slow here (a 1 GB blob: 1.6-4.6 s of CPU in the kernel's copy, then 0.5 s of fsync, against 1.3 s of
    waiting and 0.15 s of CPU with direct I/O, on this machine's virtual disk). Where direct I/O is
    refused (at the first write, on some file systems) it writes through the page cache instead.

    The queue holds at most :data:`DEPTH` chunks, so memory stays bounded whatever the blob's size. A
    failure (a full disk) is kept and raised by the caller's next :meth:`put`, or by :meth:`wait`; after
    one, or once cancelled, the thread only drains the queue, so a caller's ``put`` never blocks for ever.
    """

    DEPTH = 4

    def __init__(self, fd: int, label: str, direct: bool = True) -> None:
        self._fd = fd
        self._label = label
        self._q: queue.Queue = queue.Queue(self.DEPTH)
        self.error: BaseException | None = None
        self.cancelled = False
        self.synced = False
        self._fsync = False
        self._ended = False
        self._stage: mmap.mmap | None = None  # page-aligned, so direct writes may come from it
        self._fill = 0
        if direct and _set_direct(fd, True):
            self._stage = mmap.mmap(-1, STAGE)
        self._thread = threading.Thread(target=self._run, name=f"layerkit-write {label[:40]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _END:
                break
            if self.error is None and not self.cancelled:
                try:
                    self._write(item)
                except BaseException as exc:  # kept for the caller; the thread goes on draining
                    self._fail(exc)
        try:
            if self.error is None and not self.cancelled:
                self._flush(final=True)
                if self._fsync:
                    os.fsync(self._fd)
                    self.synced = True
        except BaseException as exc:
            self._fail(exc)
        finally:
            if self._stage is not None:
                self._stage.close()
                self._stage = None

    def _fail(self, exc: BaseException) -> None:
        """Keep the thread's failure for the caller; an OSError names the blob (a full disk would otherwise
        be reported as ``No space left on device`` alone)."""
        if isinstance(exc, OSError) and exc.filename is None and exc.strerror:
            named = OSError(exc.errno, exc.strerror, self._label)
            named.__cause__ = exc
            exc = named
        self.error = exc

    def _write(self, data: bytes | memoryview) -> None:
        if self._stage is None:
            _write_all(self._fd, data)
            return
        view = memoryview(data)
        while view:
            n = min(len(view), STAGE - self._fill)
            self._stage[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == STAGE:
                self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write the staged bytes (a full stage, or at the end whatever is left): whole blocks directly, the
        last partial block, or everything from a refused direct write on, through the page cache."""
        stage = self._stage
        if stage is None or not self._fill:
            return
        with memoryview(stage) as whole, whole[:self._fill] as data:
            done = 0
            aligned = self._fill - self._fill % ALIGN
            while done < aligned:
                try:
                    n = os.write(self._fd, data[done:aligned])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    n = 0  # direct I/O refused after all (a file system that accepted the flag)
                done += n
                if not n or n % ALIGN:
                    break
            if done < self._fill:
                _set_direct(self._fd, False)
                _write_all(self._fd, data[done:])
                if not final:  # direct writes failed: the rest of the blob goes through the page cache
                    self._stage = None
        self._fill = 0
        if self._stage is None:
            stage.close()

    def put(self, data: bytes | memoryview) -> None:
        """Queue ``data`` to be written (waits while the queue is full)."""
        if self.error is not None:
            raise self.error
        self._q.put(data)

    def end(self, fsync: bool) -> None:
        """No more data: the thread writes what is queued, fsyncs if asked, and stops (not waited for)."""
        if not self._ended:
            self._ended = True
            self._fsync = fsync
            self._q.put(_END)

    def wait(self) -> None:
        """Wait for the thread to stop; raise what failed in it."""
        self.end(False)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        """Drop what is queued and stop the thread (waits for it; never raises)."""
        self.cancelled = True
        self.end(False)
        self._thread.join()


class BlobWriter:
    """A blob being written: feed bytes with :meth:`write`, then :meth:`commit` or :meth:`abort`.

    With ``background=True`` the bytes are hashed in the caller's thread and written (then fsynced, after
    :meth:`end`) by a thread of the writer's own; :meth:`sync` and :meth:`commit` wait for it. ``direct``
    (with ``background``): write around the page cache, for a blob nobody reads soon (see
    :class:`_WriteBehind`).
    """

    def __init__(self, store: BlobStore, expected: str | None = None, label: str = "blob",
                 background: bool = False, direct: bool = True) -> None:
        self._store = store
        self.expected = validate(expected) if expected else None
        self.label = label
        fd, self._tmp = _locked_temp(store.tmp_dir, "blob-", ".partial")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None
        self._behind = _WriteBehind(fd, label, direct) if background else None

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes to the blob and to its running digest (behind: ``data`` must not change later)."""
        self._hash.update(data)
        if self._behind is not None:
            self._behind.put(data)
        else:
            _write_all(self._file.fileno(), data)
        self.size += len(data)

    def current_digest(self) -> str:
        """The digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def end(self) -> None:
        """The blob is complete: a writer working behind writes the rest and fsyncs it while the caller goes
        on (:meth:`sync` or :meth:`commit` waits for it). Nothing to do for any other writer."""
        if self._behind is not None:
            self._behind.end(fsync=True)

    def _wait(self) -> bool:
        """Wait until every byte is written; whether it is fsynced too."""
        if self._behind is None:
            return False
        self._behind.wait()
        return self._behind.synced

    def sync(self) -> None:
        """fsync what is written so far (a worker can do it before the commit, which then finds little left)."""
        if self._file.closed:
            return
        self.end()
        if not self._wait():
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
                self.end()
            synced = self._wait()
            if fsync and not synced:
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
            if self._behind is not None:
                self._behind.cancel()
        finally:
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
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {digest} not found in store") from exc

    def open(self, digest: str) -> BinaryIO:
        """Open the blob for reading."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {digest} not found in store") from exc

    def read_bytes(self, digest: str) -> bytes:
        """Read a small blob (manifest, config) whole."""
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: str | None = None, label: str = "blob", background: bool = False,
               direct: bool = True) -> BlobWriter:
        """Start writing a blob; see :class:`BlobWriter` (``background``: written behind, by a thread;
        ``direct``: around the page cache, where the file system allows)."""
        self.ensure()
        return BlobWriter(self, expected, label, background, direct)

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

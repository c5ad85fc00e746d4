"""Extracting a layer blob into a directory in overlayfs lower-dir format (whiteouts as 0/0 character
devices, opaque directories with ``trusted.overlay.opaque``), for ``run``'s overlay mount.

A layer is hostile until applied, so extraction never leaves its destination:

- the destination is opened once; every other object is reached from a directory descriptor, one path
  component at a time, with ``O_NOFOLLOW`` (``openat``, ``mkdirat``, ``mknodat``, ``symlinkat``,
  ``linkat`` without ``AT_SYMLINK_FOLLOW``): a symlink is never followed, so a layer that writes through
  one (``x -> /etc`` then ``x/passwd``) is refused, and a hardlink to a symlink links the symlink itself;
- metadata is applied to the descriptor of the very object created (``fchown``, ``fchmod``, ``futimens``)
  or by name in its directory without following links; directories' modes and times (a read-only
  directory must still take its entries, which would change its time) are applied last to the same
  directory, re-opened the same way and checked to be the same inode, so a later entry that replaces
  ``x/`` by a symlink ``x -> /host/file`` cannot reach the host file;
- members are read with the one tar reader that also indexed the layer (:func:`~.layer.classify` decides
  what each is), so extraction and the index agree on every path and type.

Whiteouts act only on the layers below (OCI layer.md): what the same layer holds survives them. A
whiteout over a directory of this layer, or a directory made where a whiteout or other non-directory of
this layer stood, is marked opaque, so the layers below stay hidden there as they would after applying
the tar in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import LayerkitError
from .content import iter_entry_bytes
from .image import Image, Layer
from .layer import (
    LayerFormatError,
    blob_tar_reader,
    classify,
    normalize_member_path,
    open_layer_tar,
    tar_error,
    whiteout_target,
)
from .tarstream import Header, TarReader
from .upper import OPAQUE_XATTR

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHED_DIRS = 64  # directory descriptors kept open (consecutive entries mostly share a parent)
# failures of the machine, not of the layer: passed on as they are
_HOST_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE,
                          errno.ENFILE))


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_SYS_OPENAT2 = 437  # the same number on every architecture that has it (added after the unified table)
_RESOLVE = 0x01 | 0x04 | 0x08  # RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH
_openat2_works: bool | None = None if sys.platform.startswith("linux") else False


def _openat2_dir(dirfd: int, rel: str) -> int | None:
    """A descriptor of directory ``rel`` below ``dirfd`` in one ``openat2`` call that fails rather than
    follow a symlink or leave ``dirfd`` (Linux 5.6+); None when that fails for any reason, and the
    caller walks the path component by component. One call instead of one per component: a layer of
    20,000 entries 256 directories deep, spread over 100 trees so that no cached directory helps, took
    33 s to extract by walking alone."""
    global _openat2_works
    if _openat2_works is False:
        return None
    how = _OpenHow(_DIR, 0, _RESOLVE)
    fd = _syscall(_SYS_OPENAT2, dirfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        _openat2_works = True
        return fd
    if _openat2_works is None and ctypes.get_errno() in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
        _openat2_works = False  # an old kernel, or a seccomp filter that refuses it
    return None


def _libc_syscall():
    try:
        f = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl
        return lambda *a: -1
    f.restype = ctypes.c_long
    f.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    return f


_syscall = _libc_syscall()


class _Tree:
    """The destination directory, addressed only through descriptors relative to its root."""

    def __init__(self, root_fd: int) -> None:
        self.root = root_fd
        self._fds: OrderedDict[str, int] = OrderedDict()  # relative directory path -> open descriptor
        self.whiteouts: set[str] = set()  # the whiteout devices this extraction made (relative paths)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root)

    def forget(self, rel: str) -> None:
        """Drop cached descriptors of ``rel`` and below (the directory is being removed)."""
        pre = rel + "/"
        for k in [k for k in self._fds if k == rel or k.startswith(pre)]:
            os.close(self._fds.pop(k))

    def _keep(self, rel: str, fd: int) -> int:
        self._fds[rel] = fd
        if len(self._fds) > _CACHED_DIRS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def dir(self, rel: str, create: bool = True) -> int | None:
        """A descriptor of directory ``rel`` (``a/b``; ``""`` is the root), owned by the tree: do not close.

        With ``create``, missing directories are made (0755, as Docker makes implicit parents) and a
        non-directory of this layer in the way is replaced by an opaque directory; a symlink in the way is
        a :class:`LayerFormatError`. Without, None when ``rel`` is not a directory reached without
        following a link."""
        if not rel:
            return self.root
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        start, cur, best = 0, self.root, ""
        for k, kfd in self._fds.items():  # the deepest cached ancestor (at most _CACHED_DIRS tests)
            if len(k) > len(best) and rel.startswith(k) and rel[len(k)] == "/":
                best, cur = k, kfd
        if best:
            start = best.count("/") + 1
        fd = _openat2_dir(cur, rel[len(best) + 1:] if best else rel)
        if fd is not None:
            return self._keep(rel, fd)
        parts = rel.split("/")
        kept = set(self._fds.values())
        kept.add(self.root)
        for i in range(start, len(parts)):
            try:
                nxt = self._open_dir(cur, parts, i, create)
            finally:
                if cur not in kept:  # an intermediate directory: closed once the next one is open
                    os.close(cur)
            if nxt is None:
                return None
            cur = nxt
        return self._keep(rel, cur)

    def _open_dir(self, parent: int, parts: list[str], i: int, create: bool) -> int | None:
        """Open ``parts[i]`` in ``parent`` as a directory (see :meth:`dir`)."""
        name = parts[i]
        try:
            return os.open(name, _DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(name, 0o755, dir_fd=parent)
            return os.open(name, _DIR, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        rel = "/".join(parts[:i + 1])
        if stat.S_ISLNK(st.st_mode):
            if not create:
                return None
            raise LayerFormatError(f"writes through the symlink /{rel}")
        if not create:
            return None
        # a file, device or whiteout of this layer where a later entry needs a directory: the directory
        # wins, and hides what the layers below had there, as applying the tar in order would
        os.unlink(name, dir_fd=parent)
        self.whiteouts.discard(rel)
        os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(name, _DIR, dir_fd=parent)
        os.setxattr(fd, OPAQUE_XATTR, b"y")
        return fd

    def clear(self, parent: int, name: str, rel: str) -> os.stat_result | None:
        """Remove what this layer put at ``rel`` (``name`` in directory ``parent``); its stat, or None."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            self.forget(rel)
            shutil.rmtree(name, dir_fd=parent)  # the descriptor-based rmtree: never follows a symlink
        else:
            os.unlink(name, dir_fd=parent)
        self.whiteouts.discard(rel)
        return st


def _lower_link_data(store: Store, image: Image | None, layer: Layer, name: str, linkname: str):
    """For a hardlink whose target is not in its own layer: the file entry whose bytes it shares, found
    in the union view of the image up to this layer, and the digest of the blob that holds them."""
    from .union import UnionView

    where = f"hardlink {name!r} points to {linkname!r}"
    if image is None:
        raise LayerFormatError(f"{where}, not in this layer")
    view = UnionView([la.index() for la in image.layers[:layer.index_in_image + 1]])
    ue = view.get(normalize_member_path(name))
    try:
        data = view.data_entry(ue) if ue is not None else None
    except LayerkitError:
        data = None
    if data is None or data.entry.type != "file" or data.layer < 0:
        raise LayerFormatError(f"{where}, which is not a file of the image")
    return data, image.layers[data.layer].digest


class _Extraction:
    """The state of one layer's extraction."""

    def __init__(self, store: Store, layer: Layer, image: Image | None, tree: _Tree) -> None:
        self.store, self.layer, self.image, self.tree = store, layer, image, tree
        self.dirs: dict[str, tuple[int, float, int, int]] = {}  # rel -> (mode, mtime, st_dev, st_ino)
        self.copies: dict[str, tuple[str, int, int]] = {}  # lower file -> (rel of its copy, dev, ino)

    def apply(self, h: Header, path: str, code: str, link: str, tr) -> None:
        """Apply one classified member (``tr`` is the tar reader, positioned at its data)."""
        tree = self.tree
        rel = path[1:]
        parent_rel, _, name = rel.rpartition("/")
        pfd = tree.dir(parent_rel)
        if code == "o":
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if code == "w":
            target = whiteout_target(name, h.name)
            trel = f"{parent_rel}/{target}" if parent_rel else target
            try:
                st = os.stat(target, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
                tree.whiteouts.add(trel)
                return
            if stat.S_ISDIR(st.st_mode):  # this layer's directory survives, the layers' below does not
                fd = os.open(target, _DIR, dir_fd=pfd)
                try:
                    os.setxattr(fd, OPAQUE_XATTR, b"y")
                finally:
                    os.close(fd)
            return  # this layer's own entry (or whiteout) is already there
        if code == "d":
            self._dir(h, pfd, name, rel)
            return
        if code == "h":
            self._hardlink(h, pfd, name, rel, link)
            return
        tree.clear(pfd, name, rel)
        if code == "f":
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
            try:
                with open(fd, "wb", closefd=False) as out:
                    for chunk in tr.chunks():
                        out.write(chunk)
                os.fchown(fd, h.uid, h.gid)
                os.fchmod(fd, h.mode & 0o7777)
                os.utime(fd, (h.mtime, h.mtime))
            finally:
                os.close(fd)
            return
        if code == "l":
            os.symlink(link, name, dir_fd=pfd)
            os.chown(name, h.uid, h.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(name, (h.mtime, h.mtime), dir_fd=pfd, follow_symlinks=False)
            return
        if code in "cb":
            kind = stat.S_IFCHR if code == "c" else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(h.devmajor, h.devminor), dir_fd=pfd)
        else:  # "p"
            os.mkfifo(name, 0o600, dir_fd=pfd)
        # by name in the directory we hold, never following a link (fchownat/fchmodat/utimensat with
        # AT_SYMLINK_NOFOLLOW): opening a device or fifo to get a descriptor could block or act
        os.chown(name, h.uid, h.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, h.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, (h.mtime, h.mtime), dir_fd=pfd, follow_symlinks=False)

    def _dir(self, h: Header, pfd: int, name: str, rel: str) -> None:
        tree = self.tree
        try:
            fd = os.open(name, _DIR, dir_fd=pfd)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            fd = None
        if fd is None:
            was = tree.clear(pfd, name, rel)
            os.mkdir(name, 0o700, dir_fd=pfd)
            fd = os.open(name, _DIR, dir_fd=pfd)
            if was is not None:  # a whiteout or non-directory of this layer stood here: hide what is below
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        os.fchown(fd, h.uid, h.gid)
        st = os.fstat(fd)
        self.dirs[rel] = (h.mode & 0o7777, h.mtime, st.st_dev, st.st_ino)
        tree.forget(rel)
        tree._keep(rel, fd)

    def _hardlink(self, h: Header, pfd: int, name: str, rel: str, link: str) -> None:
        tree = self.tree
        if link == "/" + rel:
            raise LayerFormatError(f"hardlink {h.name!r} points to itself")
        trel = link[1:]
        tparent, _, tname = trel.rpartition("/")
        tfd = tree.dir(tparent, create=False)
        st = None
        if tfd is not None and trel not in tree.whiteouts:
            try:
                st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise LayerFormatError(f"hardlink {h.name!r} points to directory {h.linkname!r}")
            tree.clear(pfd, name, rel)
            tfd = tree.dir(tparent, create=False)  # clearing may have closed it
            if tfd is None:
                raise LayerFormatError(f"hardlink {h.name!r}: its target {h.linkname!r} was replaced by it")
            # linkat without AT_SYMLINK_FOLLOW: a link to a symlink is a second name of the symlink
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            return
        # a file of a layer below: its bytes are copied, once per file; later links share the copy
        tree.clear(pfd, name, rel)
        copy = self.copies.get(link)
        if copy is not None:
            crel, dev, ino = copy
            cparent, _, cname = crel.rpartition("/")
            cfd = tree.dir(cparent, create=False)
            if cfd is not None:
                try:
                    cst = os.stat(cname, dir_fd=cfd, follow_symlinks=False)
                except FileNotFoundError:
                    cst = None
                if cst is not None and (cst.st_dev, cst.st_ino) == (dev, ino):
                    os.link(cname, name, src_dir_fd=cfd, dst_dir_fd=pfd, follow_symlinks=False)
                    return
        data, digest = _lower_link_data(self.store, self.image, self.layer, h.name, h.linkname)
        e = data.entry
        fd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            with open(fd, "wb", closefd=False) as out:
                for chunk in iter_entry_bytes(self.store.blobs, digest, e):
                    out.write(chunk)
            os.fchown(fd, e.uid, e.gid)
            os.fchmod(fd, e.mode & 0o7777)
            os.utime(fd, (e.mtime, e.mtime))
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.copies[link] = (rel, st.st_dev, st.st_ino)

    def finish(self) -> None:
        """Directories' modes and times, after every entry below them was written (a read-only directory
        can still be filled, its time is not changed by its entries), on the very directories made."""
        tree = self.tree
        for rel, (mode, mtime, dev, ino) in reversed(self.dirs.items()):
            fd = tree.dir(rel, create=False)
            if fd is None:
                continue  # replaced by a later entry: its metadata no longer applies
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (dev, ino):
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))


def extract_layer(store: Store, layer: Layer, dest: Path, image: Image | None = None) -> None:
    """Extract one layer into the existing directory ``dest`` in overlayfs lower-dir format, safely.

    A hardlink to a file of a lower layer (or one behind a symlink) gets a copy of that file's bytes,
    which needs ``image`` to find it. Errors are one-line :class:`LayerkitError` naming the layer and
    the entry (:class:`LayerFormatError` for what the layer asks that cannot be done).
    """
    with _extracting(dest, f"layer {layer.digest}") as tree:
        job = _Extraction(store, layer, image, tree)
        with open_layer_tar(store.blobs, layer.digest) as tr:
            _apply_all(job, tr)
        job.finish()


@contextlib.contextmanager
def _extracting(dest: Path, label: str) -> Iterator[_Tree]:
    """The tree of ``dest`` for one extraction; its errors become one line naming ``label`` (a failure of
    the host's own file system, a full disk say, is raised as it is)."""
    tree = _Tree(os.open(dest, _DIR))
    try:
        yield tree
    except OSError as exc:
        if exc.errno in _HOST_ERRNOS:
            raise
        raise tar_error(label, exc) from exc
    except LayerkitError as exc:
        raise tar_error(label, exc) from exc
    finally:
        tree.close()


def _apply_all(job: _Extraction, tr) -> None:
    for h in tr:
        c = classify(h)
        if c is None:
            continue
        path, code, link = c
        try:
            job.apply(h, path, code, link, tr)
        except LayerFormatError as exc:
            if repr(h.name) in str(exc):
                raise
            raise LayerFormatError(f"tar entry {h.name!r} {exc}") from exc
        except OSError as exc:
            if exc.errno in _HOST_ERRNOS:
                raise
            raise LayerFormatError(f"cannot extract tar entry {h.name!r}: {_reason(exc)}") from exc


def extract_archive(store: Store, f: BinaryIO, dest: Path, label: str) -> None:
    """Extract a tar archive that is not a stored layer (``ADD app.tar.gz /srv``: plain, gzip or zstd) into
    the existing directory ``dest``, with a layer's rules and safety (nothing followed, nothing leaves
    ``dest``, a hardlink must name a file of the archive). Errors name ``label`` and the entry."""
    with _extracting(dest, label) as tree:
        job = _Extraction(store, None, None, tree)
        _apply_all(job, TarReader(blob_tar_reader(f), True))
        job.finish()


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "a name longer than 255 bytes, or a path longer than the kernel accepts"
    return exc.strerror or str(exc)


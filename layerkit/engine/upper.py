"""A container's writable layer: a directory in overlayfs's upper-dir format.

Deletions of lower entries are whiteouts (character devices 0/0), a directory that hides everything
below it carries the ``trusted.overlay.opaque=y`` xattr — exactly what the kernel's overlayfs writes when
a real process runs in the container, so the same directory serves the Python API and ``run``.
This module turns such a directory into index entries (to stack on the image in a union view) and into
a canonical layer tar (for ``commit``).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import FileOpError
from .layer import docker_size
from .layerindex import OPAQUE_MARKER, WHITEOUT_PREFIX, Entry, LayerIndex

OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | os.PathLike) -> bool:
    """True when a directory carries overlayfs's opaque xattr."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def set_opaque(path: str | os.PathLike) -> None:
    """Mark a directory opaque (hides every lower entry below it)."""
    os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=False)


def make_whiteout(path: str | os.PathLike) -> None:
    """Create an overlayfs whiteout at ``path``."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _kind(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISCHR(m):
        return "char"
    if stat.S_ISBLK(m):
        return "block"
    if stat.S_ISFIFO(m):
        return "fifo"
    return "file"


# a process of a running container changed the layer while it was read: the user's next step
_CHANGED = ("changed while the layer was {}: a process of the container is still writing there; commit again "
            "once it has exited (or when it is idle)")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(upper: Path, skip: frozenset[str]) -> Iterator[tuple[Entry, os.stat_result | None, int, str]]:
    """The entries of an upper dir in :func:`scan_upper`'s order, each with its ``lstat`` (None for an
    opaque marker), the descriptor of the directory holding it and its name there.

    A running container's processes can rename and replace anything in its upper dir while it is read
    (``commit`` of a running container, a RUN step's layer): every directory is opened relative to its
    parent's descriptor with ``O_NOFOLLOW``, never by path, so a directory swapped for a symlink to the
    host after it was listed cannot lead the walk, or a file opened in it, out of the upper dir. The
    descriptors stay open while the entries below them are handled."""
    seen_inodes: dict[tuple[int, int], str] = {}

    def visit(fd: int, rel: str) -> Iterator[tuple[Entry, os.stat_result | None, int, str]]:
        for name in sorted(os.listdir(fd)):
            path = posixpath.join(rel, name)
            if path in skip:
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed by the container since the listing
            if is_whiteout(st):
                yield Entry(path, "whiteout", 0, 0, 0, 0, st.st_mtime, "", -1), st, fd, name
                continue
            kind = _kind(st)
            link = ""
            size = 0
            if kind == "symlink":
                try:
                    link = os.readlink(name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # removed by the container since the lstat
                except OSError as exc:  # EINVAL: no longer a symlink
                    raise FileOpError(f"{path}: " + _CHANGED.format("read")) from exc
            elif kind == "file":
                size = st.st_size
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen_inodes:
                        kind, link, size = "hardlink", seen_inodes[key], 0
                    else:
                        seen_inodes[key] = path
            entry = Entry(path, kind, size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime),
                          link, -1)
            if kind != "dir":
                yield entry, st, fd, name
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed by the container since the listing
            except OSError as exc:
                raise FileOpError(f"{path} ({exc.strerror}): " + _CHANGED.format("read")) from exc
            try:
                if (os.fstat(sub).st_dev, os.fstat(sub).st_ino) != (st.st_dev, st.st_ino):
                    raise FileOpError(f"{path}: " + _CHANGED.format("read"))
                yield entry, st, fd, name
                if _fd_opaque(sub):
                    yield Entry(path, "opaque", 0, 0, 0, 0, st.st_mtime, "", -1), None, fd, name
                yield from visit(sub, path)
            finally:
                os.close(sub)

    try:
        top = os.open(upper, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        yield from visit(top, "/")
    finally:
        os.close(top)


def _fd_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def fd_is_opaque(fd: int) -> bool:
    """True when the directory open at ``fd`` carries overlayfs's opaque xattr."""
    return _fd_opaque(fd)


def open_dir_under(upper: str | os.PathLike, path: str) -> int | None:
    """A descriptor of directory ``path`` (absolute, inside the layer) of the upper dir ``upper``, each
    component opened relative to its parent with ``O_NOFOLLOW``: a component that a container's process
    made a symlink (to the host) or a file, or removed, gives None, never a directory outside ``upper``.
    The caller closes it."""
    fd = os.open(upper, _DIR_FLAGS)
    for name in [p for p in path.split("/") if p]:
        if name in (".", ".."):
            os.close(fd)
            return None
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:  # ENOENT, ENOTDIR, ELOOP (a symlink)
            os.close(fd)
            return None
        os.close(fd)
        fd = sub
    return fd


def scan_upper(upper: Path, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """Index entries of an upper dir, parents before children, names sorted (``offset`` is -1: the bytes
    live in the directory). Hardlinked inodes become ``hardlink`` entries after the first path."""
    return [e for e, _, _, _ in _walk(upper, skip)]


def upper_index(upper: Path, skip: frozenset[str] = frozenset()) -> LayerIndex:
    """A :class:`LayerIndex` of the writable layer (diff_id unknown until committed)."""
    entries = scan_upper(upper, skip)
    size, files = docker_size(entries)
    return LayerIndex("sha256:" + "0" * 64, 0, size, files, entries)


_TAR_TYPES = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "char": tarfile.CHRTYPE,
              "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE, "file": tarfile.REGTYPE,
              "hardlink": tarfile.LNKTYPE}


def write_layer_tar(upper: Path, out: BinaryIO, skip: frozenset[str] = frozenset(),
                    clamp_mtime: int | None = None) -> None:
    """Write the writable layer as a canonical layer tar (OCI layer.md) to ``out``.

    Parents before children, names sorted, whiteouts as ``.wh.NAME``, opaque directories as
    ``DIR/.wh..wh..opq`` right after the directory, PAX headers for long names, owners, modes and
    mtimes kept, hardlinks to the first path of the inode. ``clamp_mtime`` (a reproducible build's
    ``SOURCE_DATE_EPOCH``): no entry's mtime is later than it, in whole seconds, as BuildKit's
    ``rewrite-timestamp`` does, so the same files give the same tar whenever they were written.
    The directory is read through descriptors (see :func:`_walk`): nothing outside it is ever read.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tf:
        for e, st, dir_fd, fname in _walk(upper, skip):
            name = e.path.lstrip("/")
            if e.type in ("whiteout", "opaque"):
                d, b = posixpath.split(name)
                marker = posixpath.join(d, WHITEOUT_PREFIX + b) if e.type == "whiteout" else \
                    posixpath.join(name, OPAQUE_MARKER)
                ti = tarfile.TarInfo(marker)
                ti.mtime = _clamped(e.mtime, clamp_mtime)
                tf.addfile(ti)
                continue
            ti = tarfile.TarInfo(name)
            ti.type = _TAR_TYPES[e.type]
            ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            ti.mtime = st.st_mtime if clamp_mtime is None else _clamped(st.st_mtime, clamp_mtime)
            if e.type in ("char", "block"):
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            if e.type in ("symlink", "hardlink"):
                ti.linkname = e.link if e.type == "symlink" else e.link.lstrip("/")
            if e.type != "file":
                tf.addfile(ti)
                continue
            ti.size = st.st_size
            # a running container's process may swap the file for a symlink after the lstat above:
            # never follow one, and send exactly the regular file that was measured
            try:
                fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:  # removed, or a symlink now (ELOOP)
                raise FileOpError(f"{e.path}: " + _CHANGED.format("written")) from exc
            with os.fdopen(fd, "rb") as f:
                now = os.fstat(f.fileno())
                if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino, now.st_size) != \
                        (st.st_dev, st.st_ino, st.st_size):
                    raise FileOpError(f"{e.path}: " + _CHANGED.format("written"))
                try:
                    tf.addfile(ti, f)
                except OSError as exc:  # the file shrank while it was copied ("unexpected end of data")
                    raise FileOpError(f"{e.path}: " + _CHANGED.format("written")) from exc


def _clamped(mtime: float, clamp: int | None) -> int:
    """An entry's mtime in whole seconds, no later than ``clamp`` when one is given."""
    return int(mtime) if clamp is None else min(int(mtime), clamp)

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


def scan_upper(upper: Path, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """Index entries of an upper dir, parents before children, names sorted (``offset`` is -1: the bytes
    live in the directory). Hardlinked inodes become ``hardlink`` entries after the first path."""
    entries: list[Entry] = []
    seen_inodes: dict[tuple[int, int], str] = {}

    def visit(rel: str) -> None:
        full = os.path.join(upper, rel.lstrip("/")) if rel != "/" else str(upper)
        with os.scandir(full) as it:
            names = sorted(e.name for e in it)
        for name in names:
            path = posixpath.join(rel, name)
            if path in skip:
                continue
            fp = os.path.join(full, name)
            st = os.lstat(fp)
            if is_whiteout(st):
                entries.append(Entry(path, "whiteout", 0, 0, 0, 0, st.st_mtime, "", -1))
                continue
            kind = _kind(st)
            link = ""
            size = 0
            if kind == "symlink":
                link = os.readlink(fp)
            elif kind == "file":
                size = st.st_size
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen_inodes:
                        kind, link, size = "hardlink", seen_inodes[key], 0
                    else:
                        seen_inodes[key] = path
            entries.append(Entry(path, kind, size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                 int(st.st_mtime), link, -1))
            if kind == "dir":
                if is_opaque(fp):
                    entries.append(Entry(path, "opaque", 0, 0, 0, 0, st.st_mtime, "", -1))
                visit(path)

    if upper.is_dir():
        visit("/")
    return entries


def upper_index(upper: Path, skip: frozenset[str] = frozenset()) -> LayerIndex:
    """A :class:`LayerIndex` of the writable layer (diff_id unknown until committed)."""
    entries = scan_upper(upper, skip)
    size, files = docker_size(entries)
    return LayerIndex("sha256:" + "0" * 64, 0, size, files, entries)


def write_layer_tar(upper: Path, out: BinaryIO, skip: frozenset[str] = frozenset(),
                    clamp_mtime: int | None = None) -> None:
    """Write the writable layer as a canonical layer tar (OCI layer.md) to ``out``.

    Parents before children, names sorted, whiteouts as ``.wh.NAME``, opaque directories as
    ``DIR/.wh..wh..opq`` right after the directory, PAX headers for long names, owners, modes and
    mtimes kept, hardlinks to the first path of the inode. ``clamp_mtime`` (a reproducible build's
    ``SOURCE_DATE_EPOCH``): no entry's mtime is later than it, in whole seconds, as BuildKit's
    ``rewrite-timestamp`` does, so the same files give the same tar whenever they were written.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tf:
        for e in scan_upper(upper, skip):
            name = e.path.lstrip("/")
            if e.type == "whiteout":
                d, b = posixpath.split(name)
                ti = tarfile.TarInfo(posixpath.join(d, WHITEOUT_PREFIX + b))
                ti.mtime = _clamped(e.mtime, clamp_mtime)
                tf.addfile(ti)
                continue
            if e.type == "opaque":
                ti = tarfile.TarInfo(posixpath.join(name, OPAQUE_MARKER))
                ti.mtime = _clamped(e.mtime, clamp_mtime)
                tf.addfile(ti)
                continue
            full = os.path.join(upper, name)
            ti = tf.gettarinfo(full, arcname=name)
            ti.uname = ti.gname = ""
            if clamp_mtime is not None:
                ti.mtime = _clamped(ti.mtime, clamp_mtime)
            if e.type == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e.link.lstrip("/")
                ti.size = 0
                tf.addfile(ti)
            elif ti.isreg():
                # a running container's process may swap the file for a symlink after the lstat above:
                # never follow one, and send exactly the regular file that was measured
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode) or st.st_size != ti.size:
                        raise FileOpError(f"{e.path}: changed while the layer was written; try again")
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)


def _clamped(mtime: float, clamp: int | None) -> int:
    """An entry's mtime in whole seconds, no later than ``clamp`` when one is given."""
    return int(mtime) if clamp is None else min(int(mtime), clamp)

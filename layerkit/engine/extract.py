"""Extracting a layer blob into a directory in overlayfs lower-dir format (whiteouts as 0/0 character
devices, opaque directories with ``trusted.overlay.opaque``), for ``run``'s overlay mount.

Extraction never writes through a symlink, so a layer cannot reach the host.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LayerkitError
from .content import iter_entry_bytes
from .image import Image, Layer
from .layer import LayerFormatError, normalize_member_path, open_uncompressed
from .layerindex import OPAQUE_MARKER, WHITEOUT_PREFIX
from .upper import make_whiteout, set_opaque

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


def _safe_dir(root: str, rel: str) -> str:
    """Make sure every component of ``rel`` below ``root`` is a real directory (never a symlink)."""
    cur = root
    for part in [p for p in rel.split("/") if p]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            if stat.S_ISLNK(st.st_mode):
                raise LayerFormatError(f"layer writes through symlink {rel!r}")
            os.unlink(cur)
            os.mkdir(cur, 0o755)
    return cur


def _clear(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _existing_in(root: str, rel: str) -> str | None:
    """The host path of ``rel`` under ``root`` when it exists there with only real directories on the
    way (a symlink in the path is never followed: it could lead out of ``root``)."""
    cur = root
    parts = [p for p in rel.split("/") if p]
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        st = _lstat(cur)
        if st is None or (i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode)):
            return None
    return cur if parts else None


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


def extract_layer(store: Store, layer: Layer, dest: Path, image: Image | None = None) -> None:
    """Extract one layer into ``dest`` in overlayfs lower-dir format, safely.

    A hardlink to a file of a lower layer (or one behind a symlink) gets a copy of that file's bytes,
    which needs ``image`` to find it."""
    root = str(dest)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with store.blobs.open(layer.digest) as raw, tarfile.open(fileobj=open_uncompressed(raw), mode="r|") as tf:
        for ti in tf:
            path = normalize_member_path(ti.name)
            if path == "/":
                continue
            parent, base = posixpath.split(path)
            pdir = _safe_dir(root, parent)
            host = os.path.join(pdir, base)
            if base == OPAQUE_MARKER:
                set_opaque(pdir)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                target = base[len(WHITEOUT_PREFIX):]
                if not target:
                    raise LayerFormatError(f"malformed whiteout entry {ti.name!r}")
                wpath = os.path.join(pdir, target)
                _clear(wpath)
                make_whiteout(wpath)
                continue
            if ti.isdir():
                st = _lstat(host)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    _clear(host)
                    os.mkdir(host, 0o755)
                dirs.append((host, ti))
                continue
            _clear(host)
            if ti.isreg():
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tf.extractfile(ti), out, 1 << 20)
            elif ti.issym():
                os.symlink(ti.linkname, host)
            elif ti.islnk():
                target = normalize_member_path(ti.linkname)
                src = _existing_in(root, target)
                if src is not None and not stat.S_ISDIR(os.lstat(src).st_mode):
                    os.link(src, host, follow_symlinks=False)
                    continue
                data, digest = _lower_link_data(store, image, layer, ti.name, ti.linkname)
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter_entry_bytes(store.blobs, digest, data.entry):
                        out.write(chunk)
                e = data.entry
                os.chown(host, e.uid, e.gid)
                os.chmod(host, e.mode)
                os.utime(host, (e.mtime, e.mtime))
                continue
            elif ti.ischr() or ti.isblk():
                kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
                os.mknod(host, kind | (ti.mode & 0o7777), os.makedev(ti.devmajor, ti.devminor))
            elif ti.isfifo():
                os.mkfifo(host)
            else:
                continue
            os.chown(host, ti.uid, ti.gid, follow_symlinks=False)
            if not ti.issym():
                os.chmod(host, ti.mode & 0o7777)
            os.utime(host, (ti.mtime, ti.mtime), follow_symlinks=False)
    for host, ti in reversed(dirs):
        os.chown(host, ti.uid, ti.gid)
        os.chmod(host, ti.mode & 0o7777)
        os.utime(host, (ti.mtime, ti.mtime))


def _lstat(p: str) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None

"""The cache of extracted layers that ``run`` mounts: ``STORE/layerkit/rootfs/HEX`` per diff_id (or per
chain ID for a layer whose hardlinks name files of the layers below), short links in ``rootfs/l/`` for the
overlay mount options, and the init layer of runtime mount points.

``rootfs/`` is private (0700, :mod:`.private`): the extracted layers keep an image's setuid binaries and
device nodes, which no other user of the machine may reach. An extraction goes when the last image using
it goes (``Store.remove_image``, which knows this naming: a diff_id or a chain ID in hex).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .container import RUNTIME_DIRS
from .extract import extract_layer
from .image import Image, Layer
from .private import private_dir

if TYPE_CHECKING:  # pragma: no cover
    from .container import Container
    from .store import Store


def rootfs_dir(store: Store) -> Path:
    """Where extracted layers live (a cache: deleting it only costs re-extraction)."""
    return store.rootfs_dir


def _links_below(layer: Layer) -> bool:
    """True when a hardlink of the layer names a file that the layer itself does not hold."""
    entries = layer.index().entries
    own = {e.path for e in entries if e.type in ("file", "hardlink", "symlink")}
    return any(e.type == "hardlink" and e.link not in own for e in entries)


def ensure_lower(store: Store, layer: Layer, image: Image | None = None) -> str:
    """Extract a layer once (atomically) and return its short link name for the overlay mount.

    Extractions are keyed by diff_id; a layer whose hardlinks name files of the layers below depends on
    those layers too, so it is keyed by its chain ID instead."""
    base = private_dir(rootfs_dir(store), parents=True)
    hexid = layer.diff_id.split(":", 1)[1]
    final = base / hexid
    if not final.is_dir() and layer.index_in_image > 0:
        chained = base / layer.chain_id.split(":", 1)[1]
        if chained.is_dir() or _links_below(layer):
            hexid, final = chained.name, chained
    links = base / "l"
    links.mkdir(parents=True, exist_ok=True)
    if not final.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".x-"))
        try:
            extract_layer(store, layer, tmp, image)
            os.chmod(tmp, 0o755)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    short = hexid[:16]
    link = links / short
    if not link.is_symlink():
        os.symlink(f"../{hexid}", link)
    return short


# Docker's /etc/hosts of a ``--network none`` container (libnetwork's default entries, no address of its own)
HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def ensure_init(store: Store) -> str:
    """The init layer shared by every container: the mount points that the runtime needs, kept out of the
    writable layer."""
    base = private_dir(rootfs_dir(store), parents=True)
    init = base / "init"
    if not init.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".init-"))
        for d in RUNTIME_DIRS:
            os.mkdir(tmp / d.lstrip("/"), 0o755)
        os.chmod(tmp, 0o755)
        os.replace(tmp, init)
    link = base / "l" / "init"
    if not link.is_symlink():
        os.symlink("../init", link)
    return "init"


def container_init(container: Container) -> Path:
    """The container's own init layer, above the shared one: Docker's ``/etc/hosts``, ``/etc/hostname`` (the
    short ID) and an empty ``/etc/resolv.conf`` (Docker copies the host's; with no network there is nothing
    to resolve, and the host's configuration is not the image's business). Its ``/etc`` has the owner, mode
    and mtime of the image's, so that a process changing a file in /etc copies up the image's directory as
    it is (``diff`` shows no change of /etc itself). An image whose /etc is not a directory (a symlink to
    /usr/etc) keeps it: the layer is then empty."""
    init = container.dir / "init"
    if init.is_dir():
        return init
    tmp = Path(tempfile.mkdtemp(dir=container.dir, prefix=".init-"))
    try:
        os.chmod(tmp, 0o755)
        ue = container.store.image_view(container.image).get("/etc")
        if ue is None or ue.type == "dir":
            etc = tmp / "etc"
            os.mkdir(etc)
            for name, data in (("hosts", HOSTS), ("hostname", f"{container.short_id}\n"), ("resolv.conf", "")):
                with open(etc / name, "x", encoding="ascii") as f:
                    f.write(data)
                os.chmod(etc / name, 0o644)
            if ue is not None:
                e = ue.entry
                os.chown(etc, e.uid, e.gid)
                os.chmod(etc, e.mode)
                os.utime(etc, (e.mtime, e.mtime))
            else:
                os.chmod(etc, 0o755)
        os.replace(tmp, init)
    except OSError:
        if not init.is_dir():  # not another start of the same container making it at the same time
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return init

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


def ensure_init(store: Store) -> str:
    """The init layer (mount points that the runtime needs, kept out of the writable layer)."""
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

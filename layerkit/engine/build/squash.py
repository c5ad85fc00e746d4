"""``build --squash``: the built image as its base's layers plus one layer holding everything the build
changed, as Docker's ``SquashImage`` makes it (moby ``daemon/images/image_squash.go``): the config is the
built image's, every history entry the build added is kept but marked ``empty_layer``, and one entry is
appended for the new layer (no ``created_by``, the comment ``merge <image> to <base>``, or ``create new
from <image>`` over scratch). The squashed image has no parent; the built one stays, for the cache.

The new layer is the build's layers merged into one overlayfs upper directory and frozen as any writable
layer is (:func:`layerkit.engine.commit.freeze_upper`): each layer is extracted safely on its own
(:func:`layerkit.engine.extract.extract_layer`), then moved over the ones below it, a whiteout or an opaque
directory removing what they held. A deletion is kept only for what the base has (nothing else is there
to hide); a directory that replaces something the base had at that path is made opaque, so the base's
entries below it stay hidden.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..humanize import rfc3339
from ..upper import is_opaque, is_whiteout, make_whiteout, set_opaque
from .layerdir import LayerDir

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..store import Store
    from ..union import UnionView


def squash_image(store: Store, image: Image, base: Image | None, timestamp: int | None = None) -> Image:
    """``image`` squashed onto ``base`` (None: scratch); the new image."""
    from ..commit import freeze_upper, keep_layer
    from ..extract import extract_layer
    from ..store import NewLayer

    below = list(base.layers) if base is not None else []
    view = store.image_view(base) if base is not None and base.diff_ids else None
    with LayerDir(store, None) as ld:
        for i, layer in enumerate(image.layers[len(below):]):
            src = ld.dir / f"layer-{i}"
            src.mkdir()
            extract_layer(store, layer, src, image)
            _merge(src, ld.upper, view)
            shutil.rmtree(src)
        res, _ = freeze_upper(store, ld.upper, f"squash of {image.id}", clamp_mtime=timestamp)
    keep = [NewLayer(la.digest, la.diff_id, la.media_type, la.compressed_size) for la in below]
    layer = keep_layer(store, res, keep)

    now = rfc3339(datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else datetime.now(UTC))
    cfg = copy.deepcopy(image.config)
    base_history = len(base.config.get("history") or []) if base is not None else 0
    history = [dict(h) for h in cfg.get("history") or []]
    for h in history[base_history:]:
        h["empty_layer"] = True
    comment = f"merge {image.id} to {base.id}" if base is not None else f"create new from {image.id}"
    history.append({"created": now, "comment": comment})
    cfg["history"] = history
    cfg["created"] = now
    base_ids = list(base.diff_ids) if base is not None else []
    cfg["rootfs"] = {"type": "layers", "diff_ids": base_ids + [layer.diff_id]}
    config_bytes = json.dumps(cfg, separators=(",", ":")).encode()
    squashed, _ = store.add_image(config_bytes, keep + [layer], [], parent=None)
    return squashed


def _base_kind(view: UnionView | None, path: str) -> str | None:
    """The type of ``path`` in the base image (None: it has nothing there)."""
    if view is None:
        return None
    ue = view.get(path)
    return ue.entry.type if ue is not None else None


def _remove(path: str) -> str | None:
    """Remove what the merged layer holds at ``path``; what it was (``dir``, ``whiteout``, ``other``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
        return "dir"
    os.unlink(path)
    return "whiteout" if is_whiteout(st) else "other"


def _merge(src: Path, dest: Path, view: UnionView | None) -> None:
    """Move the extracted layer ``src`` over the merged layers in ``dest`` (both overlayfs upper dirs)."""
    dirs: list[tuple[str, os.stat_result]] = []

    def visit(rel: str) -> None:
        sdir = os.path.join(src, rel) if rel else str(src)
        for name in sorted(os.listdir(sdir)):
            r = f"{rel}/{name}" if rel else name
            s, d = os.path.join(src, r), os.path.join(dest, r)
            st = os.lstat(s)
            path = "/" + r
            if is_whiteout(st):
                _remove(d)
                if _base_kind(view, path) is not None:
                    make_whiteout(d)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = is_opaque(s)
                dst = None
                try:
                    dst = os.lstat(d)
                except FileNotFoundError:
                    pass
                replaced = None
                if dst is not None and (opaque or not stat.S_ISDIR(dst.st_mode)):
                    replaced = _remove(d)
                    dst = None
                if dst is None:
                    os.mkdir(d, 0o700)
                    base_dir = _base_kind(view, path) == "dir"
                    # a base directory hidden here (this layer says so, or an earlier one replaced it)
                    if base_dir and (opaque or replaced in ("whiteout", "other")):
                        set_opaque(d)
                dirs.append((d, st))
                visit(r)
                continue
            _remove(d)
            os.rename(s, d)  # a file keeps its inode: hardlinks within the layer stay links

    visit("")
    for d, st in reversed(dirs):  # after the entries below them (moving into a directory dates it)
        os.chown(d, st.st_uid, st.st_gid)
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))


"""Plain-record analysis of images: sharing, file lists, comparison, duplicated content.

Everything here returns lists of dicts (JSON-ready rows) built from the store's indexes and union
views; :mod:`layerkit.notebook.frames` turns them into DataFrames and the CLI into tables.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from .content import iter_entry_bytes
from .image import Image
from .store import Store
from .union import UnionView


def shared_layers(images: list[Image]) -> list[dict]:
    """One row per (image, layer): sizes and how many / which of the given images share the layer.

    Sharing is by chain ID, as Docker counts it: the same layer on top of the same stack. An image named
    twice (two tags, or the same reference twice) counts once.
    """
    unique: dict[str, Image] = {}
    for img in images:
        unique.setdefault(img.id, img)
    images = list(unique.values())
    users: dict[str, list[str]] = defaultdict(list)
    for img in images:
        for cid in dict.fromkeys(img.chain_ids):
            users[cid].append(img.name)
    rows = []
    for img in images:
        created = [h.get("created_by", "") for h in img.history_entries if not h.get("empty_layer")]
        for layer in img.layers:
            names = users[layer.chain_id]
            rows.append({"image": img.name, "image_id": img.id, "index": layer.index_in_image,
                         "diff_id": layer.diff_id, "chain_id": layer.chain_id, "size": layer.size,
                         "compressed_size": layer.compressed_size,
                         "created_by": created[layer.index_in_image] if layer.index_in_image < len(created) else "",
                         "shared_by": len(names), "shared_with": [n for n in names if n != img.name]})
    return rows


def files(store: Store, image: Image, layer: int | None = None) -> list[dict]:
    """Every path of the image's union view with the layer that provides it (``layer``: of the view of
    the layers up to that one)."""
    view = store.image_view(image, layer)
    return [{"path": u.entry.path, "type": u.entry.type, "size": u.entry.size, "mode": u.entry.mode,
             "uid": u.entry.uid, "gid": u.entry.gid, "link": u.entry.link or None, "layer_index": u.layer,
             "layer": view.diff_ids[u.layer]} for u in view.walk("/")]


def layer_files(store: Store, image: Image, index: int) -> list[dict]:
    """What layer ``index`` adds, modifies and deletes relative to the layers below, with sizes."""
    view = store.image_view(image)
    rows = []
    for c in view.changes(index):
        e = c.entry
        rows.append({"kind": c.kind, "path": c.path, "type": e.type if e else c.below.entry.type,
                     "size": e.size if e else 0, "below_size": c.below.entry.size if c.below else 0,
                     "below_layer": c.below.layer if c.below else None})
    rows.sort(key=lambda r: r["path"])
    return rows


def _content_digest(store: Store, image: Image, view: UnionView, path: str) -> str:
    ue = view.get(path)
    if ue.entry.type == "hardlink":
        ue = view.lookup(ue.entry.link, follow=False)
    h = hashlib.sha256()
    # the image's own source: the store, or the archive an image read in place came from
    for chunk in iter_entry_bytes(image.source.blobs, image.layers[ue.layer].digest, ue.entry):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def compare(store: Store, a: Image, b: Image) -> dict:
    """Two images layer by layer (shared prefix, where they diverge) and file by file.

    File kinds: ``added`` (only in b), ``removed`` (only in a), ``changed`` (content differs),
    ``metadata`` (same content, different mode, owner, type or link). Content is compared without
    reading bytes when both entries come from the same layer; otherwise by size, then by digest.
    """
    prefix = 0
    for ca, cb in zip(a.chain_ids, b.chain_ids, strict=False):
        if ca != cb:
            break
        prefix += 1
    # each image's view from its own source (the store's, or in-place indexes: one may be of each)
    va, vb = a.source.image_view(a), b.source.image_view(b)
    pa = {u.entry.path: u for u in va.entries()}
    pb = {u.entry.path: u for u in vb.entries()}
    rows = []
    for path in sorted(set(pa) | set(pb)):
        ua, ub = pa.get(path), pb.get(path)
        if ua is None:
            rows.append({"kind": "added", "path": path, "size_a": None, "size_b": ub.entry.size})
            continue
        if ub is None:
            rows.append({"kind": "removed", "path": path, "size_a": ua.entry.size, "size_b": None})
            continue
        ea, eb = ua.entry, ub.entry
        same_layer = va.diff_ids[ua.layer] == vb.diff_ids[ub.layer] and ea.offset == eb.offset
        if same_layer:
            continue
        meta = (ea.type, ea.mode, ea.uid, ea.gid, ea.link) != (eb.type, eb.mode, eb.uid, eb.gid, eb.link)
        content_differs = False
        if ea.type == eb.type == "file":
            content_differs = ea.size != eb.size or (
                _content_digest(store, a, va, path) != _content_digest(store, b, vb, path))
        elif ea.type != eb.type:
            content_differs = True
        if content_differs:
            rows.append({"kind": "changed", "path": path, "size_a": ea.size, "size_b": eb.size})
        elif meta:
            rows.append({"kind": "metadata", "path": path, "size_a": ea.size, "size_b": eb.size})
    layers = []
    for i in range(max(len(a.diff_ids), len(b.diff_ids))):
        la = a.layers[i] if i < len(a.diff_ids) else None
        lb = b.layers[i] if i < len(b.diff_ids) else None
        layers.append({"index": i, "diff_id_a": la.diff_id if la else None, "diff_id_b": lb.diff_id if lb else None,
                       "size_a": la.size if la else None, "size_b": lb.size if lb else None,
                       "shared": i < prefix})
    return {"shared_prefix": prefix, "diverges_at": prefix if prefix < max(len(a.diff_ids), len(b.diff_ids))
            else None, "layers": layers, "files": rows}


def duplicates(store: Store, images: list[Image], min_size: int = 1) -> list[dict]:
    """Files with the same content in different layers (of one or several images): redundancy that
    layer sharing misses. Candidates are grouped by size first, so only same-size files are read."""
    by_size: dict[int, list[tuple[Image, int, object]]] = defaultdict(list)
    seen_layers: set[str] = set()
    for img in images:
        for layer in img.layers:
            if layer.diff_id in seen_layers:
                continue
            seen_layers.add(layer.diff_id)
            for e in layer.index().entries:
                if e.type == "file" and e.size >= min_size:
                    by_size[e.size].append((img, layer.index_in_image, e))
    groups: dict[str, list[tuple[Image, int, object]]] = defaultdict(list)
    for cands in by_size.values():
        if len({(img.layers[i].diff_id) for img, i, _ in cands}) < 2:
            continue
        for img, i, e in cands:
            h = hashlib.sha256()
            for chunk in iter_entry_bytes(store.blobs, img.layers[i].digest, e):
                h.update(chunk)
            groups["sha256:" + h.hexdigest()].append((img, i, e))
    rows = []
    for digest, members in groups.items():
        layers = {img.layers[i].diff_id for img, i, _ in members}
        if len(layers) < 2:
            continue
        size = members[0][2].size
        for img, i, e in members:
            rows.append({"content_digest": digest, "path": e.path, "image": img.name, "layer_index": i,
                         "diff_id": img.layers[i].diff_id, "size": size, "copies": len(members),
                         "wasted_bytes": size * (len(layers) - 1)})
    rows.sort(key=lambda r: (-r["wasted_bytes"], r["content_digest"], r["path"]))
    return rows

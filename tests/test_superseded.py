"""Bytes a layer adds that a later layer deletes or overwrites (``engine/superseded.py``), checked against the
union view, which ``test_union_random`` checks against ``umoci unpack``: on random stacks of files,
directories, symlinks, hardlinks, whiteouts and opaque directories, a layer's superseded bytes are exactly
the bytes of its regular files that the image's union does not take from that layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import write_layout
from test_union_random import random_stack

from layerkit.engine.store import Store
from layerkit.engine.superseded import superseded
from layerkit.formats.load import load_path


@pytest.mark.parametrize("seed", range(16))
def test_superseded_bytes_are_what_the_union_hides(tmp_path: Path, seed: int) -> None:
    layout = write_layout(tmp_path / "layout", random_stack(seed), "random:latest")
    store = Store(tmp_path / "store")
    load_path(store, str(layout))
    img = store.image("random:latest")
    indexes = [layer.index() for layer in img.layers]
    view = store.image_view(img)
    want = []
    for i, ix in enumerate(indexes):
        cols = ix.columns
        last = cols.position()  # a path listed twice in one layer counts by its last entry
        hidden = 0
        for path, k in last.items():
            if cols.types[k] != "f":
                continue
            ue = view.get(path)
            if ue is None or ue.layer != i:
                hidden += cols.sizes[k]
        want.append(hidden)
    got = superseded(indexes, top_paths=10**6)
    assert [w.superseded_bytes for w in got] == want
    for w in got:  # each file is blamed on the nearest layer above that hides it, and the files add up
        for j, files in w.paths.items():
            assert sum(b for b, _, _ in files) == w.by_layer[j]
            for _, path, how in files:
                assert _hides(indexes[j], path), (w.layer, j, path)
                assert not any(_hides(indexes[m], path) for m in range(w.layer + 1, j)), (w.layer, j, path)
                assert how in ("deleted", "overwritten")


def _hides(ix, path: str) -> bool:
    """Whether layer ``ix`` hides a lower file at ``path``: an entry at the path (any kind, a whiteout
    too), or at a parent a whiteout, an opaque marker or something that is not a directory."""
    entries = [ix.columns.entry(k) for k in range(len(ix.columns))]
    if any(e.path == path for e in entries):
        return True
    parents = set()
    p = path
    while p.rfind("/") > 0:
        p = p[:p.rfind("/")]
        parents.add(p)
    return any(e.path in parents and e.type != "dir" for e in entries)

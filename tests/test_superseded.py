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
    got = superseded(indexes)
    assert [w.superseded_bytes for w in got] == want
    for w in got:  # every superseding layer is above the layer it supersedes, and its files add up
        assert all(j > w.layer for j in w.by_layer)
        for j, files in w.paths.items():
            assert sum(b for b, _, _ in files) <= w.by_layer[j]
            assert all(how in ("deleted", "overwritten") for _, _, how in files)

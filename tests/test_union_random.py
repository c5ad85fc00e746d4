"""The union view against ``umoci unpack`` on randomly generated layer stacks (issue 3, "Union view").

Each seed builds a stack of layers from random operations on a small tree (files, directories, symlinks,
hardlinks to lower files, whiteouts, opaque directories, a file replaced by a directory and back, a
whiteout and a re-add in one layer), writes it as an OCI layout, unpacks it with umoci and compares the
rootfs, path by path, with layerkit's view: once loaded from the store's cached index files in a fresh
``Store``, once built straight from the blobs. The generator keeps a naive model of the tree only to pick
plausible operations; the expected answer is umoci's.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from builders import OPQ, WH, D, F, H, S, layer_tar, write_layout
from realtools import require, rootfs_tree

from layerkit.engine.layer import index_blob
from layerkit.engine.store import Store
from layerkit.engine.union import UnionView
from layerkit.formats.load import load_path

pytestmark = pytest.mark.tools

NAMES = "abc"


def _subtree(model: dict[str, str], p: str) -> list[str]:
    return [q for q in model if q == p or q.startswith(p + "/")]


class _Layer:
    """One layer being generated: its markers, its members, and the paths it has used."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.markers: list = []
        self.members: list = []
        self.emitted: dict[str, str] = {}
        self.whited: set[str] = set()
        self.pinned: set[str] = set()
        self.opaque: set[str] = set()  # hardlink targets: nothing else of this layer may replace them

    def free(self, p: str) -> bool:
        """True when ``p`` can get an entry without clashing with what this layer holds already."""
        parts = p.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        return (p not in self.emitted and p not in self.whited
                and not any(q == p or q.startswith(p + "/") for q in self.pinned)
                and not any(q.startswith(p + "/") for q in self.emitted)
                and all(self.emitted.get(a, "d") == "d" and a not in self.pinned for a in ancestors))

    def untouched(self, p: str) -> bool:
        """True when this layer has replaced or deleted neither ``p`` nor any of its parents so far."""
        parts = p.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        return (p not in self.emitted and all(self.emitted.get(a, "d") == "d" for a in ancestors)
                and not any(w == p or w in ancestors for w in self.whited)
                and not any(o in ancestors for o in self.opaque))

    def parents(self, p: str) -> None:
        """List ``p``'s parent directories, as real tools do."""
        parts = p.split("/")
        for i in range(1, len(parts)):
            a = "/".join(parts[:i])
            if a not in self.emitted:
                self.emitted[a] = "d"
                self.members.append(D(a, mode=self.rnd.choice([0o755, 0o750, 0o700])))

    def add(self, p: str, kind: str, member) -> None:
        self.parents(p)
        self.emitted[p] = kind
        self.members.append(member)


def _marker_op(layer: _Layer, model: dict[str, str], op: str, p: str) -> None:
    rnd = layer.rnd
    want = {"whiteout": "dfhl", "opaque": "d", "hardlink": "f"}[op]
    pool = [q for q in sorted(model) if model[q] in want]
    if not pool:
        return
    target = rnd.choice(pool)
    if op == "whiteout":
        if layer.free(target):
            layer.whited.add(target)
            layer.markers.append(WH(target))
    elif op == "opaque":
        if layer.free(target):
            layer.markers.append(OPQ(target))
            layer.opaque.add(target)
            if rnd.random() < 0.7:  # usually with its directory entry, sometimes the marker alone
                layer.add(target, "d", D(target, mode=0o711))
            else:
                layer.whited.add(target)  # nothing else of this layer goes under it
    elif layer.free(p) and layer.untouched(target) \
            and not (p + "/").startswith(target + "/") and not target.startswith(p + "/"):
        layer.add(p, "h", H(p, target))
        layer.pinned.add(target)


def _apply_to_model(model: dict[str, str], layer: _Layer) -> None:
    for m in layer.markers:
        parent, _, base = m.name.rpartition("/")
        if base == ".wh..wh..opq":
            for q in _subtree(model, parent):
                if q != parent:
                    del model[q]
        else:
            for q in _subtree(model, (parent + "/" if parent else "") + base[4:]):
                del model[q]
    for m in layer.members:
        kind = {b"5": "d", b"0": "f", b"2": "l", b"1": "h"}[m.type]
        if kind != "d" or model.get(m.name, "d") != "d":
            for q in _subtree(model, m.name):
                del model[q]
        model[m.name] = kind


def random_stack(seed: int, layers: int = 6) -> list[bytes]:
    """Layer tars of random operations; markers come first in each tar, parents before children."""
    rnd = random.Random(seed)
    model: dict[str, str] = {}  # path -> d / f / l / h: the tree after the layers so far
    tars = []
    for n in range(layers):
        layer = _Layer(rnd)
        for _ in range(rnd.randint(3, 9) if n else 12):
            op = rnd.choice(["file", "file", "dir", "symlink", "whiteout", "opaque", "hardlink"])
            p = "/".join(rnd.choice(NAMES) for _ in range(rnd.randint(1, 3)))
            if op in ("whiteout", "opaque", "hardlink"):
                _marker_op(layer, model, op, p)
            elif not layer.free(p):
                continue
            elif op == "file":
                layer.add(p, "f", F(p, rnd.randbytes(rnd.randint(0, 40)), mode=rnd.choice([0o644, 0o600, 0o755]),
                                    uid=rnd.choice([0, 1000]), gid=rnd.choice([0, 1000])))
            elif op == "dir":
                layer.add(p, "d", D(p, mode=rnd.choice([0o755, 0o700])))
            else:
                layer.add(p, "l", S(p, rnd.choice(["a", "/b/c", "../../a", "c/a", "nowhere"])))
        # hardlinks last, so a layer never links to something it replaces after the link
        layer.members.sort(key=lambda m: m.type == b"1")
        _apply_to_model(model, layer)
        tars.append(layer_tar(layer.markers + layer.members))
    return tars


def view_tree(view: UnionView) -> dict[str, tuple]:
    """path -> (type, size as lstat gives it, mode, uid, gid, symlink target), a hardlink as the file it shares
    an inode with."""
    out = {}
    for ue in view.walk("/"):
        e = view.data_entry(ue).entry
        size = len(e.link.encode()) if e.type == "symlink" else e.size if e.type == "file" else None
        out[ue.path] = (e.type, size, e.mode, e.uid, e.gid, e.link if e.type == "symlink" else None)
    return out


@pytest.mark.parametrize("seed", range(16))
def test_random_stack_equals_umoci_unpack(tmp_path: Path, seed: int) -> None:
    require("umoci")
    tars = random_stack(seed)
    layout = write_layout(tmp_path / "layout", tars, "random:latest")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:random:latest", str(bundle)], check=True,
                   capture_output=True)
    want = rootfs_tree(bundle / "rootfs")
    load_path(Store(tmp_path / "store"), str(layout))
    fresh = Store(tmp_path / "store")  # a new process's view: the index files on disk, nothing in memory
    img = fresh.image("random:latest")
    cached = fresh.image_view(img)
    from_blobs = UnionView([index_blob(fresh.blobs, la.digest, "layer") for la in img.layers])
    for view in (cached, from_blobs):
        got = view_tree(view)
        mismatched = {p: (want.get(p), got.get(p)) for p in sorted(set(got) | set(want)) if got.get(p) != want.get(p)}
        assert mismatched == {}, f"seed {seed}: path: (umoci, layerkit)"
    # the change records replay the same merge: what they add up to is the final tree
    live: dict[str, int] = {}
    for i in range(len(tars)):
        for c in cached.changes(i):
            if c.kind == "deleted":
                live.pop(c.path, None)
            else:
                live[c.path] = i
    assert live == {ue.path: ue.layer for ue in cached.walk("/")}

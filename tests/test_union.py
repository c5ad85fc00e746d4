"""The union view over layer tars, with the awkward cases of the OCI image spec's ``layer.md``.

Each case builds a few tiny layer tars with :mod:`tarfile`, indexes them (``index_tar_stream``) and
stacks them in a :class:`~layerkit.engine.union.UnionView`; it checks lookups, listings, the providing
layer of each path and what each layer adds, modifies and deletes. The last tests load the same stack as
an image (an OCI layout written here) into a store and read it back through ``ls -R --format json`` and
``cat``, so the CLI sees what the view sees.

Expected results follow layer.md: a whiteout or an opaque marker acts only on the layers below it,
wherever it stands in the tar, so what the same layer adds survives it; a non-directory over a directory
hides the directory's children; a hardlink shares the data of the file it names as it was when the layer
was applied.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import builders
import pytest
from builders import OPQ, WH, D, F, H, S, layer_tar

from layerkit.cli import main
from layerkit.engine.layer import LayerFormatError, docker_size, index_tar_stream
from layerkit.engine.layerindex import LayerIndex
from layerkit.engine.store import Store
from layerkit.engine.tarstream import ChunkReader
from layerkit.engine.union import UnionView
from layerkit.errors import InvalidArchive, NotFound
from layerkit.formats.load import load_path


def diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index(data: bytes, label: str = "layer") -> LayerIndex:
    """Index a layer tar as the store does when it ingests one."""
    entries = index_tar_stream(ChunkReader(iter([data[i:i + 700] for i in range(0, len(data), 700)])), label)
    size, files = docker_size(entries)
    return LayerIndex(diff_id(data), len(data), size, files, entries)


def view_of(*layers: list[tarfile.TarInfo]) -> UnionView:
    return UnionView([index(layer_tar(m), f"layer {i}") for i, m in enumerate(layers)])


def names(view: UnionView, path: str) -> list[str]:
    return [u.path.rsplit("/", 1)[1] for u in view.listdir(path)]


def changes(view: UnionView, layer: int) -> dict[str, str]:
    """path -> added/modified/deleted for one layer."""
    out: dict[str, str] = {}
    for c in view.changes(layer):
        assert c.layer == layer
        assert c.path not in out, f"two change records for {c.path}"
        out[c.path] = c.kind
    return out


def tree(view: UnionView) -> dict[str, tuple[str, int]]:
    """path -> (type, providing layer) of the whole view."""
    return {u.path: (u.type, u.layer) for u in view.walk("/")}


# ---- whiteouts ------------------------------------------------------------------------------------

BASE = [D("a"), F("a/x", b"old x"), F("a/y", b"y"), F("b", b"b"), D("c"), F("c/1", b"1"), D("c/2"),
        F("c/2/deep", b"deep")]


@pytest.mark.parametrize("order", ["add-then-whiteout", "whiteout-then-add"])
def test_whiteout_and_readd_in_one_layer(order: str) -> None:
    """A whiteout and a re-add of the same name in one layer: the new entry wins, in either tar order."""
    pairs = [
        (F("a/x", b"new x"), WH("a/x")),            # file over file
        (D("b"), WH("b")),                          # directory over file
        (F("c", b"c is a file now"), WH("c")),      # file over directory with children
    ]
    top = [m for p in pairs for m in (p if order == "add-then-whiteout" else p[::-1])]
    v = view_of(BASE, top)
    x = v.lookup("/a/x")
    assert (x.type, x.layer, x.entry.size) == ("file", 1, len(b"new x"))
    assert names(v, "/a") == ["x", "y"]
    assert v.get("/a/y").layer == 0
    assert (v.get("/b").type, v.get("/b").layer) == ("dir", 1)
    assert v.listdir("/b") == []
    assert (v.get("/c").type, v.get("/c").layer) == ("file", 1)
    for gone in ("/c/1", "/c/2", "/c/2/deep"):
        assert v.get(gone) is None
        with pytest.raises(NotFound):
            v.lookup(gone)
    assert names(v, "/") == ["a", "b", "c"]
    assert changes(v, 1) == {"/a/x": "modified", "/b": "modified", "/c": "modified", "/c/1": "deleted",
                             "/c/2": "deleted", "/c/2/deep": "deleted"}
    by_path = {c.path: c for c in v.changes(1)}
    assert by_path["/a/x"].below.layer == 0 and by_path["/a/x"].below.entry.size == len(b"old x")
    assert by_path["/c"].below.type == "dir"


@pytest.mark.parametrize("order", ["add-then-whiteout", "whiteout-then-add"])
def test_whiteout_of_directory_and_readd_with_new_children(order: str) -> None:
    """``.wh.c`` plus ``c/`` and ``c/new`` in one layer: only the new child is visible."""
    readd = [D("c"), F("c/new", b"n")]
    top = readd + [WH("c")] if order == "add-then-whiteout" else [WH("c")] + readd
    v = view_of(BASE, top)
    assert names(v, "/c") == ["new"]
    assert v.get("/c").layer == 1 and v.get("/c/new").layer == 1
    assert v.get("/c/1") is None and v.get("/c/2/deep") is None
    ch = changes(v, 1)
    assert ch == {"/c": "modified", "/c/new": "added", "/c/1": "deleted", "/c/2": "deleted",
                  "/c/2/deep": "deleted"}


def test_whiteout_hides_whole_subtree_and_stays_hidden() -> None:
    """A whiteout of a directory hides its children from every lower layer; a later layer can re-add."""
    v = view_of(BASE, [F("c/2/more", b"m")], [WH("c")], [F("c/again", b"a")])
    assert v.get("/c/2/more") is None
    assert names(v, "/c") == ["again"]
    assert v.get("/c").layer == 3  # implicit directory created by the entry's parent path
    assert changes(v, 2) == {"/c": "deleted", "/c/1": "deleted", "/c/2": "deleted", "/c/2/deep": "deleted",
                             "/c/2/more": "deleted"}
    assert changes(v, 3) == {"/c": "added", "/c/again": "added"}
    # a whiteout of something that never existed deletes nothing
    v2 = view_of(BASE, [WH("nothing"), WH("a/nothing")])
    assert changes(v2, 1) == {}
    assert tree(v2) == tree(view_of(BASE))


def test_whiteout_only_acts_below_not_on_later_layers() -> None:
    """A whiteout in layer 1 does not hide what layer 2 adds at the same path."""
    v = view_of(BASE, [WH("a/x")], [F("a/x", b"third")])
    assert v.lookup("/a/x").layer == 2
    assert changes(v, 1) == {"/a/x": "deleted"}
    assert changes(v, 2) == {"/a/x": "added"}


# ---- opaque directories ---------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["marker-first", "marker-last"])
def test_opaque_directory_with_new_entries_in_same_layer(order: str) -> None:
    """``.wh..wh..opq`` hides the lower contents; new entries of the same layer survive, in any order."""
    base = BASE + [D("o"), F("o/old1", b"o1"), D("o/sub"), F("o/sub/deep", b"d")]
    new = [D("o", mode=0o700), F("o/new", b"n"), D("o/sub"), F("o/sub/fresh", b"f")]
    top = [OPQ("o")] + new if order == "marker-first" else new + [OPQ("o")]
    v = view_of(base, top)
    assert names(v, "/o") == ["new", "sub"]
    assert names(v, "/o/sub") == ["fresh"]
    assert v.get("/o").entry.mode == 0o700 and v.get("/o").layer == 1
    assert v.get("/o/sub").layer == 1
    for gone in ("/o/old1", "/o/sub/deep"):
        with pytest.raises(NotFound):
            v.lookup(gone)
    # siblings outside the opaque directory are untouched
    assert v.lookup("/a/x").layer == 0
    assert changes(v, 1) == {"/o": "modified", "/o/new": "added", "/o/sub": "modified",
                             "/o/sub/fresh": "added", "/o/old1": "deleted", "/o/sub/deep": "deleted"}


def test_opaque_marker_without_directory_entry_keeps_lower_directory() -> None:
    """An opaque marker alone empties the directory but the directory itself still comes from below."""
    v = view_of(BASE, [OPQ("a")])
    assert (v.get("/a").type, v.get("/a").layer) == ("dir", 0)
    assert v.listdir("/a") == []
    assert changes(v, 1) == {"/a/x": "deleted", "/a/y": "deleted"}


# ---- type changes ---------------------------------------------------------------------------------

def test_file_replaced_by_directory_and_back() -> None:
    l0 = [F("r", b"file first"), F("keep", b"k")]
    l1 = [D("r"), F("r/inner", b"i"), D("r/sub"), F("r/sub/f", b"f")]
    l2 = [F("r", b"file again!")]
    v1 = view_of(l0, l1)
    assert (v1.get("/r").type, v1.get("/r").layer) == ("dir", 1)
    assert names(v1, "/r") == ["inner", "sub"]
    assert changes(v1, 1) == {"/r": "modified", "/r/inner": "added", "/r/sub": "added", "/r/sub/f": "added"}
    v2 = view_of(l0, l1, l2)
    r = v2.lookup("/r")
    assert (r.type, r.layer, r.entry.size) == ("file", 2, len(b"file again!"))
    assert v2.get("/r/inner") is None and v2.get("/r/sub/f") is None
    with pytest.raises(NotFound):
        v2.lookup("/r/inner")
    assert v2.listdir("/r") == [r]  # ls of a file lists the file
    assert changes(v2, 2) == {"/r": "modified", "/r/inner": "deleted", "/r/sub": "deleted",
                              "/r/sub/f": "deleted"}
    assert sorted(tree(v2)) == ["/keep", "/r"]


def test_directory_replaced_by_symlink_hides_children() -> None:
    v = view_of(BASE, [S("a", "c")])
    assert v.get("/a").type == "symlink"
    assert v.get("/a/x") is None
    assert names(v, "/a") == ["1", "2"]  # listing through the link shows /c
    assert v.lookup("/a/1").path == "/c/1"
    assert changes(v, 1) == {"/a": "modified", "/a/x": "deleted", "/a/y": "deleted"}


def test_implicit_parent_directories() -> None:
    """A member whose parents have no entries of their own gets implicit directories (as tar creates)."""
    v = view_of([F("p/q/r/file", b"z")])
    assert [(u.path, u.type, u.layer) for u in v.walk("/")] == [
        ("/p", "dir", 0), ("/p/q", "dir", 0), ("/p/q/r", "dir", 0), ("/p/q/r/file", "file", 0)]
    assert changes(v, 0) == {"/p": "added", "/p/q": "added", "/p/q/r": "added", "/p/q/r/file": "added"}


def test_same_path_twice_in_one_layer_last_wins() -> None:
    v = view_of(BASE, [F("a/x", b"first"), F("a/x", b"second!")])
    assert v.lookup("/a/x").entry.size == len(b"second!")
    assert changes(v, 1) == {"/a/x": "modified"}


# ---- symlinks -------------------------------------------------------------------------------------

SYMS = [D("etc"), F("etc/real", b"real"), D("usr"), D("usr/lib"), F("usr/lib/lib.so", b"so"),
        S("lnk", "etc"), S("abs", "/etc/real"), S("up", "../../../etc/real"), S("usr/lib64", "lib"),
        S("usr/rel", "../etc/real"), S("loop1", "loop2"), S("loop2", "loop1"), S("dangling", "/nowhere"),
        S("etc/self", "."), S("chain", "lnk")]


def test_symlinks_resolve_inside_the_view() -> None:
    v = view_of(SYMS)
    assert v.lookup("/lnk/real").path == "/etc/real"
    assert v.lookup("/chain/real").path == "/etc/real"
    assert v.lookup("/abs").path == "/etc/real"
    assert v.lookup("/up").path == "/etc/real"  # '..' never climbs above the root
    assert v.lookup("/usr/rel").path == "/etc/real"
    assert v.lookup("/usr/lib64/lib.so").path == "/usr/lib/lib.so"
    assert v.lookup("/etc/self/self/real").path == "/etc/real"
    assert v.resolve("/lnk/../usr") == "/usr"
    link = v.lookup("/abs", follow=False)
    assert (link.type, link.entry.link) == ("symlink", "/etc/real")
    assert v.get("/lnk").entry.link == "etc"
    assert names(v, "/lnk") == ["real", "self"]
    assert [u.path for u in v.walk("/lnk")] == ["/etc/real", "/etc/self"]
    with pytest.raises(NotFound):
        v.lookup("/dangling")
    assert v.lookup("/dangling", follow=False).type == "symlink"
    with pytest.raises(NotFound, match="too many levels"):
        v.lookup("/loop1")
    with pytest.raises(NotFound):
        v.lookup("/etc/real/below-a-file")


def test_symlink_retargeted_in_upper_layer() -> None:
    v = view_of(SYMS, [S("lnk", "usr"), WH("abs"), S("abs", "/usr/lib/lib.so")])
    assert names(v, "/lnk") == ["lib", "lib64", "rel"]
    assert v.lookup("/abs").path == "/usr/lib/lib.so"
    assert changes(v, 1) == {"/lnk": "modified", "/abs": "modified"}


# ---- hardlinks ------------------------------------------------------------------------------------

def test_hardlinks_across_layers() -> None:
    l0 = [D("h"), F("h/target", b"target data")]
    l1 = [D("h2"), H("h2/link", "h/target"), F("h2/own", b"own"), H("h2/own-link", "./h2/own")]
    v = view_of(l0, l1)
    link = v.get("/h2/link")
    assert (link.type, link.entry.link, link.layer) == ("hardlink", "/h/target", 1)
    assert v.get("/h2/own-link").entry.link == "/h2/own"
    assert changes(v, 1) == {"/h2": "added", "/h2/link": "added", "/h2/own": "added", "/h2/own-link": "added"}
    assert v.layers[1].size == len(b"own")  # Docker's size counts a hardlinked inode once, links not at all


def test_hardlink_keeps_data_of_target_deleted_or_replaced_later() -> None:
    """A link shares the inode it was made to: a later whiteout or replacement of that path leaves the
    link's bytes alone (``umoci unpack`` agrees: see test_container_real)."""
    l0 = [D("h"), F("h/target", b"hard data"), F("h/t2", b"t2 data")]
    l1 = [H("hl", "h/target"), H("hl2", "h/t2"), H("hl3", "hl2")]
    l2 = [WH("h/target"), F("h/t2", b"replaced")]
    v = view_of(l0, l1, l2)
    assert v.get("/h/target") is None
    for link, src, size in (("/hl", "/h/target", 9), ("/hl2", "/h/t2", 7), ("/hl3", "/h/t2", 7)):
        data = v.data_entry(v.get(link))
        assert (data.path, data.layer, data.type, data.entry.size) == (src, 0, "file", size)
    assert v.data_entry(v.get("/h/t2")).layer == 2


# ---- long names -----------------------------------------------------------------------------------

LONG_DIR = "d" * 120
LONG = f"{LONG_DIR}/{'n' * 150}"
LONG_TARGET = "/" + "/".join(["t" * 60] * 3)


def test_pax_long_names() -> None:
    v = view_of([D(LONG_DIR), F(LONG, b"long"), S("s" * 110, LONG_TARGET), H("h" * 130, LONG)],
                [WH(LONG), F(f"{LONG_DIR}/{'m' * 200}", b"m")])
    assert len(LONG) > 255
    assert v.get("/" + LONG) is None
    assert names(v, "/" + LONG_DIR) == ["m" * 200]
    assert v.get("/" + "s" * 110).entry.link == LONG_TARGET
    assert v.get("/" + "h" * 130).entry.link == "/" + LONG
    assert changes(v, 1) == {"/" + LONG: "deleted", f"/{LONG_DIR}/{'m' * 200}": "added"}


# ---- malformed layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".wh.", "dir/.wh.", ".wh..", "dir/.wh..", ".wh..wh."])
def test_malformed_whiteout_is_an_error(name: str) -> None:
    data = layer_tar([D("dir"), F(name)])
    with pytest.raises(InvalidArchive) as info:
        index(data, "layer L")
    assert isinstance(info.value, LayerFormatError)
    assert "layer L" in str(info.value) and "whiteout" in str(info.value)


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../x", "/../../etc/passwd"])
def test_path_escaping_root_is_an_error(name: str) -> None:
    with pytest.raises(LayerFormatError, match="outside the root"):
        index(layer_tar([F(name, b"x")]))


def test_hardlink_escaping_root_is_an_error() -> None:
    with pytest.raises(LayerFormatError):
        index(layer_tar([H("x", "../../etc/passwd")]))


def test_dot_dot_inside_the_root_is_cleaned() -> None:
    v = view_of([D("a"), F("a/../b", b"b"), F("./c", b"c")])
    assert sorted(tree(v)) == ["/a", "/b", "/c"]


# ---- the same stack as an image in a store ------------------------------------------------------

def write_layout(dest: Path, layers: list[bytes], tag: str) -> Path:
    """An OCI image layout holding one image with uncompressed ``layers``."""
    return builders.write_layout(dest, layers, tag)


STACK = [
    BASE + [D("o"), F("o/old", b"old"), F("r", b"r as file"), D("h"), F("h/target", b"hard data"),
            D("etc"), F("etc/real", b"real etc"), S("lnk", "etc"), S("up", "../../etc/real")],
    [F("a/x", b"new x!"), WH("a/x"), OPQ("o"), D("o"), F("o/new", b"fresh"), D("r"), F("r/in", b"in"),
     H("hl", "h/target"), F(LONG, b"long one")],
    [WH("c"), F("r", b"r is a file again"), S("lnk", "a")],
]


@pytest.fixture(scope="module")
def stack_store(tmp_path_factory) -> tuple[Path, list[bytes]]:
    root = tmp_path_factory.mktemp("union-store")
    layers = [layer_tar(m) for m in STACK]
    layout = write_layout(root / "layout", layers, "union:test")
    store = root / "store"
    loaded = load_path(Store(store), str(layout))
    assert len(loaded) == 1
    return store, layers


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_ls_recursive_json_of_loaded_stack(capsys, stack_store) -> None:
    store, layers = stack_store
    rc, out, err = cli(capsys, "--store", str(store), "ls", "union:test", "-R", "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    got = {r["path"]: (r["type"], r["size"], r["link"], r["layer"]) for r in rows}
    ids = [diff_id(x) for x in layers]
    expected_view = UnionView([index(x) for x in layers])


    def lstat_size(u) -> int:  # what lstat says in a mounted rootfs; the tar says 0 for links
        if u.type == "symlink":
            return len(u.entry.link.encode())
        return expected_view.data_entry(u).entry.size if u.type == "hardlink" else u.entry.size

    expected = {u.path: (u.type, lstat_size(u), u.entry.link or None, ids[u.layer]) for u in expected_view.walk("/")}
    assert got == expected
    assert [r["path"] for r in rows] == [u.path for u in expected_view.walk("/")]  # parents first, sorted
    assert got["/a/x"] == ("file", 6, None, ids[1])
    assert got["/a/y"][3] == ids[0]
    assert "/c" not in got and "/c/1" not in got
    assert got["/r"] == ("file", len(b"r is a file again"), None, ids[2])
    assert "/r/in" not in got
    assert sorted(p for p in got if p.startswith("/o/")) == ["/o/new"]
    assert got["/hl"] == ("hardlink", len(b"hard data"), "/h/target", ids[1])  # its file's size, as lstat
    assert got["/lnk"] == ("symlink", 1, "a", ids[2])  # the length of its target
    assert got["/" + LONG][0] == "file"
    for r in rows:
        assert set(r) == {"path", "type", "size", "mode", "uid", "gid", "mtime", "link", "layer"}
    # a directory through a symlink, and a single file
    rc, out, _ = cli(capsys, "--store", str(store), "ls", "union:test", "/lnk", "--format", "json")
    assert rc == 0 and [r["path"] for r in json.loads(out)] == ["/a/x", "/a/y"]
    rc, out, _ = cli(capsys, "--store", str(store), "ls", "union:test", "/o/new", "--format", "json")
    assert rc == 0 and [(r["path"], r["size"]) for r in json.loads(out)] == [("/o/new", 5)]
    rc, out, err = cli(capsys, "--store", str(store), "ls", "union:test", "/c")
    assert rc == 1 and err.startswith("layerkit: error: ") and out == ""


@pytest.mark.parametrize("path,data", [
    ("/a/x", b"new x!"), ("/a/y", b"y"), ("/r", b"r is a file again"), ("/o/new", b"fresh"),
    ("/hl", b"hard data"), ("/up", b"real etc"), ("/lnk/y", b"y"), ("/" + LONG, b"long one"),
])
def test_cat_of_loaded_stack(capsys, stack_store, path: str, data: bytes) -> None:
    store, _ = stack_store
    capsys.readouterr()
    rc = main(["--store", str(store), "cat", "union:test", path])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.encode() == data


@pytest.mark.parametrize("path", ["/c/1", "/o/old", "/r/in", "/a", "/nonexistent"])
def test_cat_refuses_hidden_or_missing(capsys, stack_store, path: str) -> None:
    store, _ = stack_store
    rc, out, err = cli(capsys, "--store", str(store), "cat", "union:test", path)
    assert rc == 1 and out == ""
    assert err.startswith("layerkit: error: ") and len(err.splitlines()) == 1


HL_STACK = [[D("h"), F("h/target", b"hard data"), F("h/t2", b"t2 data")],
            [H("hl", "h/target"), H("hl2", "h/t2")],
            [WH("h/target"), F("h/t2", b"replaced")]]


@pytest.fixture(scope="module")
def hardlink_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hardlink-store")
    layout = write_layout(root / "layout", [layer_tar(m) for m in HL_STACK], "hl:test")
    load_path(Store(root / "store"), str(layout))
    return root / "store"


def test_container_reads_hardlink_whose_target_changed_later(hardlink_store) -> None:
    from layerkit.engine.container import create_container, remove_container

    store = Store(hardlink_store)
    c = create_container(store, "hl:test", ["sh"])
    try:
        assert c.read("/hl") == b"hard data"
        assert c.read("/hl2") == b"t2 data"
        assert c.read("/h/t2") == b"replaced"
        c.append("/hl2", b"+")  # copy-up copies the link's own bytes
        assert c.read("/hl2") == b"t2 data+"
        assert c.read("/h/t2") == b"replaced"
    finally:
        remove_container(store, c.id, force=True)


@pytest.mark.parametrize("path,data", [("/hl", b"hard data"), ("/hl2", b"t2 data")])
def test_cat_image_hardlink_whose_target_changed_later(capsys, hardlink_store, path: str, data: bytes) -> None:
    rc, out, err = cli(capsys, "--store", str(hardlink_store), "cat", "hl:test", path)
    assert (rc, out.encode()) == (0, data), err


def test_cp_out_hardlink_whose_target_changed_later(capsys, hardlink_store, tmp_path) -> None:
    from layerkit.engine.container import create_container, remove_container

    store = Store(hardlink_store)
    c = create_container(store, "hl:test", ["sh"])
    try:
        rc, _, err = cli(capsys, "--store", str(hardlink_store), "cp", f"{c.id}:/hl", str(tmp_path / "hl"))
        assert rc == 0, err
        assert (tmp_path / "hl").read_bytes() == b"hard data"
    finally:
        remove_container(store, c.id, force=True)


def test_load_refuses_malformed_whiteout(tmp_path) -> None:
    layout = write_layout(tmp_path / "bad", [layer_tar([D("dir"), F("dir/.wh.")])], "bad:wh")
    store = Store(tmp_path / "store")
    with pytest.raises(InvalidArchive, match="whiteout"):
        load_path(store, str(layout))
    assert store.images() == []


def test_load_refuses_escaping_path(tmp_path) -> None:
    layout = write_layout(tmp_path / "bad", [layer_tar([F("../../escape", b"x")])], "bad:dotdot")
    store = Store(tmp_path / "store")
    with pytest.raises(InvalidArchive, match="outside the root"):
        load_path(store, str(layout))
    assert store.images() == []
    assert not (tmp_path / "escape").exists()

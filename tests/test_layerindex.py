"""The per-layer index cache file (``STORE/layerkit/layers/<diff_id>.idx``): what is written reads back
entry for entry, and a damaged or foreign file is rebuilt from the blob instead of being trusted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from builders import OPQ, WH, D, F, H, S, layer_tar, write_layout

from layerkit.engine.layer import index_blob
from layerkit.engine.layerindex import Entry, LayerIndex, read_index, write_index
from layerkit.engine.store import Store
from layerkit.formats.load import load_path

AWKWARD = [D("a"), F("a/x", b"x" * 3, uid=1000, gid=100, mode=0o600), F("a/x", b"again!"),
           F("n\u00e9\u00e9/with\nnewline", b"nl"), F("d" * 150 + "/" + "l" * 120, b"long"),
           S("lnk", "../../a/x"), H("hl", "a/x"), WH("gone"), OPQ("a"), F("empty"),
           F("f\udcff-not-utf8", b"raw")]


def _fields(e: Entry) -> tuple:
    return (e.path, e.type, e.size, e.mode, e.uid, e.gid, e.mtime, e.link, e.offset)


def test_index_file_round_trip(tmp_path: Path) -> None:
    data = layer_tar(AWKWARD)
    st = Store(tmp_path / "s")
    st.ensure()
    digest = st.blobs.put_bytes(data)
    built = index_blob(st.blobs, digest, "layer")
    write_index(tmp_path / "idx", built)
    back = read_index(tmp_path / "idx", built.diff_id)
    assert back is not None
    assert (back.diff_id, back.tar_size, back.size, back.files) == (built.diff_id, built.tar_size, built.size,
                                                                    built.files)
    assert [_fields(e) for e in back.entries] == [_fields(e) for e in built.entries]
    kinds = {e.path: e.type for e in back.entries}
    assert kinds["/gone"] == "whiteout" and kinds["/a"] == "opaque" and kinds["/hl"] == "hardlink"
    assert "/f\udcff-not-utf8" in kinds and "/n\u00e9\u00e9/with\nnewline" in kinds
    c = back.columns
    assert c.dirs == {"/a"} and c.implied == {"/" + "d" * 150, "/n\u00e9\u00e9"}
    assert [c.paths[k] for k in c.markers] == ["/.wh.gone", "/a/.wh..wh..opq"]
    # the mtime of a tar is whole seconds: it reads back as an int, as the JSON output shows it
    assert all(type(e.mtime) is int for e in back.entries)


def test_entries_and_columns_agree(tmp_path: Path) -> None:
    """An index made from Entry objects (a container's writable layer) gives the same columns."""
    entries = [Entry("/a", "dir", 0, 0o755, 0, 0, 1, "", 0), Entry("/a/b", "whiteout", 0, 0, 0, 0, 1, "", 512),
               Entry("/", "opaque", 0, 0, 0, 0, 1, "", 1024), Entry("/s", "symlink", 0, 0o777, 0, 0, 1.5, "a", 0)]
    li = LayerIndex("sha256:" + "1" * 64, 0, 1, 2, entries)
    assert li.columns.paths == ["/a", "/a/.wh.b", "/.wh..wh..opq", "/s"]
    write_index(tmp_path, li)
    back = read_index(tmp_path, li.diff_id)
    assert [_fields(e) for e in back.entries] == [_fields(e) for e in entries]


def test_empty_layer_index(tmp_path: Path) -> None:
    li = LayerIndex("sha256:" + "2" * 64, 1024, 0, 0, [])
    write_index(tmp_path, li)
    back = read_index(tmp_path, li.diff_id)
    assert back is not None and back.entries == [] and len(back.columns) == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flipped-byte", "old-version", "empty"])
def test_damaged_index_file_is_rebuilt(tmp_path: Path, damage: str) -> None:
    """A cache file that does not read back whole is ignored and rebuilt from the (verified) blob."""
    layout = write_layout(tmp_path / "layout", [layer_tar(AWKWARD)], "idx:test")
    load_path(Store(tmp_path / "store"), str(layout))
    st = Store(tmp_path / "store")
    layer = st.image("idx:test").layers[0]
    path = st.layer_index_dir / (layer.diff_id[7:] + ".idx")
    good = path.read_bytes()
    want = [_fields(e) for e in layer.index().entries]
    if damage == "truncate":
        path.write_bytes(good[:-7])
    elif damage == "garbage":
        path.write_bytes(good[:40] + b"\xff" * 20 + good[60:])
    elif damage == "flipped-byte":  # inside a path: the lengths still add up, the checksum does not
        i = good.index(b"/a/x")
        path.write_bytes(good[:i + 1] + b"b" + good[i + 2:])
    elif damage == "old-version":
        path.write_bytes(good.replace(b"index 2\n", b"index 1\n", 1))
    else:
        path.write_bytes(b"")
    fresh = Store(tmp_path / "store")
    assert [_fields(e) for e in fresh.layer_index(layer.diff_id).entries] == want
    assert path.read_bytes() == good  # rewritten


def test_non_utf8_names_survive_the_view(tmp_path: Path) -> None:
    """A name that is not UTF-8 (Linux allows any bytes) is listed and read like any other."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        ti = tarfile.TarInfo("caf\udce9")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"latin"[:4]))
    layout = write_layout(tmp_path / "layout", [buf.getvalue()], "latin:test")
    load_path(Store(tmp_path / "store"), str(layout))
    fresh = Store(tmp_path / "store")
    view = fresh.image_view(fresh.image("latin:test"))
    assert [u.path for u in view.walk("/")] == ["/caf\udce9"]
    assert view.get("/caf\udce9").entry.size == 4

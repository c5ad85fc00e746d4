"""Many-image archives load in linear time and all or nothing (issue 11 item 10).

Before, each image of an archive re-read index.json and every manifest of the store: 1,000 images took
25-230 s, 20,000 tags 21 s, and an interrupted load left part of the tags. Here an archive of 20,000
RepoTags and one of 2,000 images sharing one layer load in seconds with ``index.json`` and ``images``
right; a bad image late in an archive, or SIGKILL while the images are being recorded, leaves no tag of
the archive; more than 100,000 tags in one load are refused (memory). The 100,000-tag figure is printed
by ``benchmarks/many_tags_bench.py``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from builders import add_member, many_images_archive
from test_bad_input import check_load_refused, snapshot

from layerkit import errors
from layerkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EPOCH = 1704067200
REF_NAME = "org.opencontainers.image.ref.name"


def index_tags(store: Path) -> dict[str, str]:
    """docker.io-normalized tag -> manifest digest, from the store's index.json."""
    idx = json.loads((store / "index.json").read_text())
    return {d["annotations"][REF_NAME]: d["digest"] for d in idx["manifests"] if d.get("annotations")}


def images_json(store: Path, capsys) -> list[dict]:
    """``layerkit images --format json`` rows."""
    capsys.readouterr()
    assert main(["--store", str(store), "images", "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_twenty_thousand_tags(tmp_path, capsys):
    """20,000 RepoTags over 3 images: loaded in seconds; index.json holds one entry per tag, and every tag
    names the image the archive gave it."""
    path, ids = many_images_archive(tmp_path / "tags.tar", images=3, tags=20_000, shared=False, prefix="tags")
    st = tmp_path / "store"
    t0 = time.monotonic()
    capsys.readouterr()
    assert main(["--store", str(st), "load", str(path)]) == 0
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out
    assert out.count("Loaded image: ") == 20_000
    assert elapsed < 15, f"{elapsed:.1f} s"  # 21 s on the quadratic code, about 1 s now
    tags = index_tags(st)
    assert len(tags) == 20_000 and len(json.loads((st / "index.json").read_text())["manifests"]) == 20_000
    rows = images_json(st, capsys)
    got = {f"{r['repository']}:{r['tag']}": r["id"] for r in rows}
    assert got == ids


def test_two_thousand_images_sharing_one_layer(tmp_path, capsys):
    """2,000 images (one tag each) on one shared layer: one layer blob, 2,000 configs and manifests, one
    index.json entry per image (1,000 took 25 s to 233 s before)."""
    path, ids = many_images_archive(tmp_path / "shared.tar", images=2000, tags=2000, shared=True, prefix="shared")
    st = tmp_path / "store"
    t0 = time.monotonic()
    capsys.readouterr()
    assert main(["--store", str(st), "load", str(path)]) == 0
    elapsed = time.monotonic() - t0
    assert elapsed < 20, f"{elapsed:.1f} s"
    rows = images_json(st, capsys)
    assert {f"{r['repository']}:{r['tag']}": r["id"] for r in rows} == ids
    assert len({r["id"] for r in rows}) == 2000
    blobs = list((st / "blobs" / "sha256").iterdir())
    assert len(blobs) == 1 + 2000 + 2000  # the layer once, a config and a manifest per image
    again = main(["--store", str(st), "load", str(path)])  # loading it again changes nothing
    assert again == 0 and len(index_tags(st)) == 2000


def test_bad_image_late_in_the_archive_records_no_tag(tmp_path, capsys):
    """2,000 images whose last one's layer is not what its config says: refused with one line naming that
    image's layer, and the store (with an image already in it) is byte for byte as it was."""
    st = tmp_path / "store"
    first, _ = many_images_archive(tmp_path / "first.tar", images=1, tags=1, shared=False, prefix="first")
    assert main(["--store", str(st), "load", str(first)]) == 0
    path, _ = many_images_archive(tmp_path / "late.tar", images=2000, tags=4000, shared=True, prefix="late",
                                  bad_last=True)
    check_load_refused(capsys, st, path, errors.DigestMismatch, ["layer.tar"])
    assert set(index_tags(st)) == {"docker.io/scale/first0:t0"}


def test_sigkill_while_recording_leaves_no_tag(tmp_path, capsys):
    """SIGKILL while the load is writing the 2,000 images' configs and manifests (the last step before the
    one index.json update): no tag of the archive is visible, the store still lists its old image, and a
    second load of the same archive records them all."""
    st = tmp_path / "store"
    first, _ = many_images_archive(tmp_path / "first.tar", images=1, tags=1, shared=False, prefix="first")
    assert main(["--store", str(st), "load", str(first)]) == 0
    index_before = (st / "index.json").read_bytes()
    path, ids = many_images_archive(tmp_path / "many.tar", images=2000, tags=2000, shared=True, prefix="kill")
    blobs = st / "blobs" / "sha256"
    before = len(os.listdir(blobs))
    proc = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(st), "load", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 120
    while len(os.listdir(blobs)) < before + 200:  # well into recording the images
        assert proc.poll() is None, "the load ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (st / "index.json").read_bytes() == index_before
    assert [f"{r['repository']}:{r['tag']}" for r in images_json(st, capsys)] == ["scale/first0:t0"]
    assert main(["--store", str(st), "load", str(path)]) == 0
    assert len(index_tags(st)) == 2001
    assert list((st / "layerkit" / "tmp").iterdir()) == []  # what the killed load left was removed
    rows = images_json(st, capsys)
    assert {f"{r['repository']}:{r['tag']}": r["id"] for r in rows if r["repository"] != "scale/first0"} == ids


def test_more_than_100000_tags_refused(tmp_path, capsys):
    """100,001 tags in one archive: refused with one line (about 1 KB of memory per tag), store unchanged."""
    st = tmp_path / "store"
    first, _ = many_images_archive(tmp_path / "first.tar", images=1, tags=1, shared=False, prefix="first")
    assert main(["--store", str(st), "load", str(first)]) == 0
    before = snapshot(st)
    path, _ = many_images_archive(tmp_path / "toomany.tar", images=2, tags=100_001, shared=False, prefix="many")
    check_load_refused(capsys, st, path, errors.InvalidManifest, ["more than 100000 tags"])
    assert snapshot(st) == before


@pytest.mark.parametrize("order", ["same", "moved"])
def test_tags_move_between_images_of_one_archive(tmp_path, capsys, order):
    """The rules of one ``docker load`` hold inside a batch: a tag given to two images of the archive ends on
    the later one, and an image that loses its only tag stays, untagged."""
    path, _ = many_images_archive(tmp_path / "a.tar", images=2, tags=2, shared=False, prefix="move")
    doc = None
    with tarfile.open(path) as tf:
        doc = json.loads(tf.extractfile("manifest.json").read())
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers() if m.name != "manifest.json"]
    if order == "moved":
        doc[1]["RepoTags"] = doc[0]["RepoTags"]  # both images claim the first one's tag
    out = tmp_path / "b.tar"
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data))
        add_member(tf, "manifest.json", json.dumps(doc).encode())
    st = tmp_path / "store"
    assert main(["--store", str(st), "load", str(out)]) == 0
    rows = images_json(st, capsys)
    ids = [e["Config"][:64] for e in doc]
    if order == "same":
        assert sorted((r["tag"], r["id"][7:]) for r in rows) == sorted([("t0", ids[0]), ("t1", ids[1])])
    else:
        tagged = {(r["tag"], r["id"][7:]) for r in rows}
        assert ("t0", ids[1]) in tagged and ("<none>", ids[0]) in tagged and len(rows) == 2


def test_absurdly_deep_image_is_refused(capsys, tmp_path):
    """Docker's 127 limits what mounts an image; loading reads deeper ones (as Podman and skopeo do), up to a
    bound that keeps a hostile image's union views cheap."""
    import builders

    from layerkit.formats.importer import MAX_STORED_LAYERS

    layers = [builders.layer_tar([builders.F(f"l{i}", b"x")]) for i in range(MAX_STORED_LAYERS + 1)]
    layout = builders.write_layout(tmp_path / "deep", layers, "deep:1")
    check_load_refused(capsys, tmp_path / "store", layout, errors.MaxDepthExceeded, ["1001 layers"])

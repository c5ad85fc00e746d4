"""Fuzzing the tar reader and the archive loader with hypothesis (issue 11, "Tests").

Small valid archives are mutated (bytes overwritten, cut, numbers replaced by base-256 or signed
values; checksums recomputed half of the time so that mutations reach past the checksum): whatever
comes in, nothing but a :class:`~layerkit.errors.LayerkitError` may come out, nothing may hang (an
alarm interrupts an example after a few seconds), both reader kinds must agree, and a failed
``layerkit load`` must leave the store exactly as it was.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import tarfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from layerkit.cli import main
from layerkit.engine.layer import classify
from layerkit.engine.tarstream import BLOCK, ChunkReader, FileReader, TarReader
from layerkit.errors import LayerkitError

from .tarcraft import (
    GNU,
    b256,
    dir_,
    gnu_long,
    hardlink,
    header,
    member,
    pax,
    symlink,
    tar,
    tree_digest,
    write_layout,
)

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Hang(Exception):
    """An example ran past its alarm."""


@contextmanager
def alarm(seconds: int):
    def ring(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- the header reader ------------------------------------------------------------------------------

SEED = tar(
    dir_("etc"), member("etc/passwd", b"root:x:0:0::/root:/bin/sh\n" * 3, mode=0o644),
    pax({"path": "long/" * 30 + "name", "mtime": "1704067200.5", "uid": "1000"}), member("short", b"pax data"),
    gnu_long("g" * 150), member("x", b"gnu long", fmt=GNU),
    symlink("link", "etc/passwd"), hardlink("hard", "etc/passwd"),
    header("dev", type=b"3", devmajor=1, devminor=3), member("a/.wh.b"), member("a/.wh..wh..opq"),
    member("big", bytes(range(256)) * 9),
)
HEADER_AT = []  # offsets of the seed's header blocks


def _header_offsets(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos + BLOCK <= len(data) and data[pos:pos + BLOCK].count(0) != BLOCK:
        out.append(pos)
        size = int(data[pos + 124:pos + 136].strip(b"\0 ") or b"0", 8)
        typ = data[pos + 156:pos + 157]
        if typ in (b"1", b"2", b"3", b"4", b"5", b"6"):
            size = 0
        pos += BLOCK + size + (-size % BLOCK)
    return out


HEADER_AT.extend(_header_offsets(SEED))
FIELDS = {"size": (124, 12), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "mtime": (136, 12),
          "devmajor": (329, 8), "type": (156, 1), "magic": (257, 8), "name": (0, 100), "prefix": (345, 155)}


def fix_checksums(data: bytearray) -> None:
    for pos in HEADER_AT:
        if pos + BLOCK <= len(data):
            data[pos + 148:pos + 156] = b" " * 8
            data[pos + 148:pos + 156] = b"%06o\x00 " % sum(data[pos:pos + BLOCK])


@st.composite
def mutated_tars(draw) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["byte", "field", "number", "cut", "splice"]))
        if how == "byte":
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif how in ("field", "number"):
            pos = draw(st.sampled_from(HEADER_AT))
            off, width = FIELDS[draw(st.sampled_from(sorted(FIELDS)))]
            if how == "number" and width >= 8:
                n = draw(st.sampled_from([-512, -1, 0, 1 << 33, 1 << 62, (1 << 63) - 1, 3 << 30]))
                val = b256(n, width) if draw(st.booleans()) else (b"%o" % abs(n) if n >= 0 else b"-%o" % -n)
            else:
                val = draw(st.binary(min_size=0, max_size=width))
            data[pos + off:pos + off + width] = val.ljust(width, b"\x00")[:width]
        elif how == "cut":
            del data[draw(st.integers(0, len(data))):]
            if not data:
                break
        else:  # replace a PAX or long-name payload byte range by random records
            i = draw(st.integers(0, max(0, len(data) - 40)))
            data[i:i + 40] = draw(st.sampled_from([b"20 size=-512\n", b"19 mtime=nan\n", b"9999999 path=x\n",
                                                   b"10 path\x00=x\n", b"99999999999999999999999 x=y\n",
                                                   b"18 GNU.sparse.size=1\n"])).ljust(40, b"\x00")
    if draw(st.booleans()):
        fix_checksums(data)
    return bytes(data)


def outcome(r, reads: list[int]) -> tuple:
    """What the reader makes of the stream: the members (name, type, size, data read), or the error."""
    tr = TarReader(r)
    got = []
    try:
        for k, h in enumerate(tr):
            n = reads[k % len(reads)]
            if n < 0:
                data = b"".join(tr.chunks(333))
            else:  # read() returns at most n bytes (what is buffered): read until n or the member's end
                parts = []
                while n > 0 and (piece := tr.read(n)):
                    parts.append(piece)
                    n -= len(piece)
                data = b"".join(parts)
            try:
                c = classify(h)
            except LayerkitError as exc:
                c = ("refused", type(exc).__name__)
            got.append((h.name, h.type, h.size, h.offset_data, data, c))
    except LayerkitError as exc:
        return tuple(got), type(exc).__name__
    return tuple(got), None


@FUZZ
@given(mutated_tars(), st.integers(1, 1500), st.lists(st.integers(-1, 700), min_size=1, max_size=5))
def test_header_reader_raises_only_its_own_errors(data: bytes, chunk: int, reads: list[int]) -> None:
    """Any exception other than a LayerkitError (TarFormatError, LayerFormatError) fails the test, as
    does a hang; a chunk stream and a seekable file give the same members and the same error."""
    with alarm(10):
        a = outcome(ChunkReader(iter([data[i:i + chunk] for i in range(0, len(data), chunk)])), reads)
        b = outcome(FileReader(io.BytesIO(data)), reads)
    assert a == b
    event(f"reader: {a[1] or 'read to the end'}")


@FUZZ
@given(st.binary(min_size=BLOCK, max_size=4 * BLOCK))
def test_random_blocks_with_good_checksums(raw: bytes) -> None:
    """Random header blocks that pass the checksum reach every field parser."""
    data = bytearray(raw[:len(raw) // BLOCK * BLOCK])
    for pos in range(0, len(data), BLOCK):
        data[pos + 148:pos + 156] = b" " * 8
        data[pos + 148:pos + 156] = b"%06o\x00 " % sum(data[pos:pos + BLOCK])
    with alarm(10):
        outcome(ChunkReader(iter([bytes(data)])), [-1])


# ---- the loader -------------------------------------------------------------------------------------

def good_layers() -> list[bytes]:
    return [tar(dir_("bin"), member("bin/tool", b"#!/bin/sh\necho hi\n" * 20, mode=0o755),
                pax({"path": "etc/" + "n" * 120}), member("etc/x", b"config")),
            tar(member("bin/tool", b"replaced"), member("etc/.wh.gone"), symlink("bin/sh", "tool"))]


def docker_archive(dest: Path, layers: list[bytes]) -> Path:
    """A classic docker-archive (``docker save``) of one image."""
    import hashlib

    ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                      "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": ids},
                      "history": [{"created_by": "x"} for _ in layers]}).encode()
    ch = hashlib.sha256(cfg).hexdigest()
    names = [f"{i[7:]}/layer.tar" for i in ids]
    with tarfile.open(dest, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add(f"{ch}.json", cfg)
        for n, x in zip(names, layers, strict=True):
            add(n, x)
        add("manifest.json", json.dumps([{"Config": f"{ch}.json", "RepoTags": ["fuzz:1"], "Layers": names}]).encode())
    return dest


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-seeds")
    layers = good_layers()
    return {"docker-archive": docker_archive(root / "image.tar", layers),
            "oci": write_layout(root / "layout", layers, "fuzz:1", compression=["gzip", "zstd"])}


def load(store: Path, path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["--store", str(store), "load", str(path)])
    return rc, err.getvalue()


def mutate(data: bytes, edits: list[tuple[float, int]], cut: float | None) -> bytes:
    b = bytearray(data)
    for where, value in edits:
        b[int(where * (len(b) - 1))] = value
    if cut is not None:
        del b[int(cut * len(b)):]
    return bytes(b)


EDITS = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6)
CUT = st.none() | st.floats(0, 1)


@pytest.fixture
def store(tmp_path: Path, seeds) -> Path:
    """A store that already holds the unmutated image (so a failed load has something to leave alone)."""
    s = tmp_path / "store"
    assert load(s, seeds["docker-archive"])[0] == 0
    return s


def check_load(store: Path, path: Path) -> None:
    before = tree_digest(store)
    with alarm(20):
        rc, err = load(store, path)
    assert rc in (0, 1), err
    event("load: ok" if rc == 0 else "load: refused")
    if rc == 1:
        assert err.startswith("layerkit: error: ") and err.count("\n") == 1, err
        assert tree_digest(store) == before, "a failed load changed the store"


@settings(FUZZ, max_examples=60)
@given(edits=EDITS, cut=CUT)
def test_load_of_mutated_docker_archive(tmp_path: Path, seeds, store: Path, edits, cut) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(mutate(seeds["docker-archive"].read_bytes(), edits, cut))
    check_load(store, bad)


@settings(FUZZ, max_examples=60)
@given(which=st.sampled_from(["layer0", "layer1", "manifest", "config", "index"]), edits=EDITS, cut=CUT)
def test_load_of_mutated_oci_layout(tmp_path: Path, seeds, store: Path, which: str, edits, cut) -> None:
    layout = tmp_path / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    shutil.copytree(seeds["oci"], layout)
    index = json.loads((layout / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / mdigest[7:]).read_bytes())
    target = {"layer0": manifest["layers"][0]["digest"], "layer1": manifest["layers"][1]["digest"],
              "manifest": mdigest, "config": manifest["config"]["digest"]}.get(which)
    path = layout / "index.json" if target is None else layout / "blobs" / "sha256" / target[7:]
    path.write_bytes(mutate(path.read_bytes(), edits, cut))
    check_load(store, layout)


@settings(FUZZ, max_examples=80)
@given(layer=mutated_tars(), compression=st.sampled_from(["tar", "gzip", "zstd"]))
def test_load_and_extract_of_mutated_layer_tars(tmp_path: Path, store: Path, layer: bytes,
                                                compression: str) -> None:
    """A layout whose digests and diff_id are right but whose layer tar is mutated reaches the index
    (load) and, when loaded, extraction: only LayerkitErrors, no hang, nothing written outside the
    destination (a host directory next to it is hashed), and the store unchanged by a failed load."""
    import hashlib

    from layerkit.engine.extract import extract_layer
    from layerkit.engine.store import Store

    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    canary = work / "canary"
    canary.mkdir()
    (canary / "f").write_bytes(b"canary")
    before = tree_digest(canary)
    layout = write_layout(work / "layout", [layer], "mut:1", compression=compression)
    check_load(store, layout)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    s = Store(store)
    img = next((i for i in s.images() if i.layers and i.layers[-1].diff_id == diff_id), None)
    if img is None:
        return
    dest = work / "dest"
    dest.mkdir()
    with alarm(20):
        try:
            extract_layer(s, img.layers[-1], dest, img)
            event("extract: ok")
        except LayerkitError as exc:
            assert "\n" not in str(exc)
            event("extract: refused")
    assert tree_digest(canary) == before

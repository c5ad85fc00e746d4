"""Hostile outer archives: what ``load`` reads before any layer (issue 11 items 5, 7, 9, and 11's descriptor
sizes).

Every refusal is checked as tests/test_bad_input.py checks one (its helpers are reused): one line on
stderr naming the culprit, exit status 1, the API's specific error, and the store byte for byte as it was
with nothing left in ``layerkit/tmp``. The bombs run ``layerkit load`` in a child process that reports its own peak RSS
(``VmHWM``) while a thread watches the disk use of the store's ``tmp`` directory.

Archives are crafted here: with :mod:`tarfile` where it can write the case, with raw 512-byte headers where
it cannot (GNU-magic prefix fields, negative sizes, an extended header claiming gigabytes). Gzip bombs are
concatenated gzip members (a gzip stream may hold several; ``gzip -d`` and every reader inflate them in
turn), so gigabytes of zeros cost a few megabytes and a fraction of a second to build.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from realtools import require, run, run_bytes
from test_bad_input import check_load_refused, snapshot

from layerkit import errors
from layerkit.engine.store import Store
from layerkit.engine.tarstream import FileReader, iter_headers
from layerkit.formats.load import load_path

from . import peak

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1704067200
GIB = 1 << 30
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
RSS_LIMIT_MB = 200


# ---- building archives -------------------------------------------------------------------------

def sha(data: bytes) -> str:
    """Hex sha256."""
    return hashlib.sha256(data).hexdigest()


def tar_bytes(members: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of ``(name, data)`` (data None: a directory) and ``(name, None, type, linkname)`` members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for m in members:
            name, data = m[0], m[1]
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = EPOCH, 0o644
            if len(m) > 2:
                ti.type, ti.linkname = m[2], m[3]
                tf.addfile(ti)
            elif data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def layer_of(seed: str) -> bytes:
    """A one-file layer tar unique to ``seed``."""
    return tar_bytes([(f"{seed}.txt", f"made for {seed}\n".encode())])


def config_for(diff_ids: list[str], seed: str) -> bytes:
    """An image config naming these diff_ids."""
    return json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                       "config": {"Cmd": ["sh"], "Labels": {"seed": seed}},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids},
                       "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ADD {seed}"}
                                   for _ in diff_ids]}).encode()


@dataclass
class Img:
    """One image of a classic docker-archive (config, ``HEX/layer.tar``, an entry of manifest.json)."""

    seed: str
    layer: bytes
    config: bytes
    tag: str

    @classmethod
    def make(cls, seed: str, diff_id: str | None = None) -> Img:
        """A valid image (``diff_id`` overrides what its config claims)."""
        layer = layer_of(seed)
        return cls(seed, layer, config_for([diff_id or "sha256:" + sha(layer)], seed), f"hostile/{seed}:v1")

    @property
    def config_name(self) -> str:
        return sha(self.config) + ".json"

    @property
    def layer_name(self) -> str:
        return sha(self.layer) + "/layer.tar"

    def members(self) -> list[tuple]:
        return [(self.config_name, self.config), (self.layer_name.split("/")[0], None),
                (self.layer_name, self.layer)]

    def entry(self) -> dict:
        return {"Config": self.config_name, "RepoTags": [self.tag], "Layers": [self.layer_name]}


def docker_archive(path: Path, imgs: list[Img], manifest: object = None, extra: list[tuple] = ()) -> Path:
    """A classic docker-archive: ``extra`` members first, then each image, then manifest.json."""
    members = list(extra)
    for img in imgs:
        members += img.members()
    doc = manifest if manifest is not None else [img.entry() for img in imgs]
    members.append(("manifest.json", doc if isinstance(doc, bytes) else json.dumps(doc).encode()))
    path.write_bytes(tar_bytes(members))
    return path


def raw_header(name: bytes, size: int | bytes, typ: bytes = b"0", magic: bytes = b"ustar\x0000",
               prefix: bytes = b"", linkname: bytes = b"") -> bytes:
    """One 512-byte tar header, fields as given (a bytes ``size`` is the raw 12-byte field)."""
    h = bytearray(512)
    h[0:100] = name.ljust(100, b"\0")
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size if isinstance(size, bytes) else b"%011o\0" % size
    h[136:148] = b"%011o\0" % EPOCH
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[157:257] = linkname.ljust(100, b"\0")
    h[257:265] = magic
    h[345:500] = prefix.ljust(155, b"\0")
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def raw_member(name: bytes, data: bytes, **kw) -> bytes:
    """A raw header and its data, padded to the block size."""
    return raw_header(name, len(data), **kw) + data + b"\0" * (-len(data) % 512)


def tar_head(members: list[tuple]) -> bytes:
    """The member blocks of a tar without its end-of-archive blocks (to splice more members after)."""
    buf = io.BytesIO()
    tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for name, data in members:
        ti = tarfile.TarInfo(name)
        ti.mtime, ti.mode = EPOCH, 0o644
        if data is None:
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
        else:
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()[:tf.offset]


@functools.cache
def zeros_64m() -> bytes:
    """64 MiB of zeros as one gzip member (65 KB)."""
    return gzip.compress(b"\0" * (64 << 20), compresslevel=9, mtime=0)


def gz_zeros(n: int) -> bytes:
    """``n`` zero bytes as concatenated gzip members (64 MiB each, then the rest)."""
    whole, rest = divmod(n, 64 << 20)
    return zeros_64m() * whole + (gzip.compress(b"\0" * rest, mtime=0) if rest else b"")


def gz_with_zeros(path: Path, before: list[tuple], name: str, nzeros: int, after: list[tuple]) -> Path:
    """A gzipped tar: the members ``before``, a member ``name`` of ``nzeros`` zero bytes, the members
    ``after`` and the end of the archive; a few MB however large ``nzeros`` is."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = nzeros, EPOCH, 0o644
    with open(path, "wb") as f:
        f.write(gzip.compress(tar_head(before) + ti.tobuf(tarfile.USTAR_FORMAT), mtime=0))
        f.write(gz_zeros(nzeros + (-nzeros % 512)))
        f.write(gzip.compress(tar_bytes(after), mtime=0))
    return path


# ---- the store and the child process ------------------------------------------------------------

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def lk(*args: str) -> list[str]:
    """The ``layerkit`` command line, run with this checkout's package."""
    return [sys.executable, "-m", "layerkit", *args]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding one image, loaded through the CLI."""
    root = tmp_path_factory.mktemp("hostile-archives")
    st = root / "store"
    arch = docker_archive(root / "base.tar", [Img.make("base")])
    r = subprocess.run(lk("--store", str(st), "load", str(arch)), capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    return st


def du(path: Path) -> int:
    """Bytes of disk the files below ``path`` use (allocated blocks)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


@dataclass
class Run:
    """A finished ``layerkit`` child: exit status, output, its peak RSS and the most its tmp dir held."""

    rc: int
    out: str
    err: str
    rss_mb: float
    tmp_peak: int
    seconds: float


def run_watched(store: Path, *args: str, timeout: float = 120) -> Run:
    """Run ``layerkit --store STORE ARGS`` as a child that reports its own peak RSS, while a thread samples
    the disk use of ``STORE/layerkit/tmp`` every 5 ms."""
    tmp = store / "layerkit" / "tmp"
    disk_peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            disk_peak[0] = max(disk_peak[0], du(tmp))
            time.sleep(0.005)

    with tempfile.TemporaryDirectory() as d:
        hwm = Path(d) / "hwm"
        watcher = threading.Thread(target=watch, daemon=True)
        t0 = time.monotonic()
        watcher.start()
        try:
            argv = peak.reporting([sys.executable, "-m", "layerkit", "--store", str(store), *args], hwm)
            proc = subprocess.run(argv, capture_output=True, env=ENV, timeout=timeout)
        finally:
            stop.set()
            watcher.join()
        rss = peak.peak_bytes(hwm) / (1 << 20)  # the child's own peak (VmHWM), see peak.py
        return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), rss, disk_peak[0],
                   time.monotonic() - t0)


def assert_refused_line(r: Run, *names: str) -> str:
    """Exit 1 and exactly one ``layerkit: error:`` line naming ``names``."""
    lines = r.err.splitlines()
    assert r.rc == 1, (r.rc, r.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("layerkit: error: "), lines[-5:]
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@dataclass
class Oci:
    """One image of an OCI layout: its layer, config, manifest and index documents, altered by a test
    before :meth:`write` (which names every blob by its digest and fills the index entry's digest and,
    unless ``manifest_size`` is given, its size)."""

    seed: str
    layer: bytes
    config: bytes
    manifest: dict
    index: dict
    manifest_size: int | None = None

    @classmethod
    def make(cls, seed: str) -> Oci:
        layer = layer_of(seed)
        config = config_for(["sha256:" + sha(layer)], seed)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + sha(config), "size": len(config)},
                    "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + sha(layer), "size": len(layer)}]}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [{"mediaType": OCI_MANIFEST, "digest": "", "size": 0,
                                "annotations": {REF_NAME: f"docker.io/hostile/{seed}:v1"}}]}
        return cls(seed, layer, config, manifest, index)

    @property
    def manifest_bytes(self) -> bytes:
        return json.dumps(self.manifest).encode()

    def write(self, root: Path, blobs: dict[str, bytes] | None = None) -> Path:
        """The layout under ``root``; ``blobs`` adds (or replaces) blobs by digest."""
        d = root / "blobs" / "sha256"
        d.mkdir(parents=True)
        mbytes = self.manifest_bytes
        for data in (self.layer, self.config, mbytes):
            (d / sha(data)).write_bytes(data)
        for digest, data in (blobs or {}).items():
            (d / digest.split(":")[1]).write_bytes(data)
        entries = self.index.get("manifests") if isinstance(self.index, dict) else None
        entry = entries[0] if isinstance(entries, list) and entries else None
        if isinstance(entry, dict) and entry.get("digest") == "":
            entry["digest"] = "sha256:" + sha(mbytes)
            entry["size"] = len(mbytes) if self.manifest_size is None else self.manifest_size
        (root / "index.json").write_text(json.dumps(self.index))
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        return root


def tar_dir(src: Path, out: Path, gz: bool = False) -> Path:
    """An OCI archive of a layout (``oci-layout``, ``index.json``, then the blobs); gzipped if asked."""
    names = ["oci-layout", "index.json"] + sorted(
        str(p.relative_to(src)) for p in (src / "blobs" / "sha256").iterdir())
    data = tar_bytes([(n, (src / n).read_bytes()) for n in names])
    out.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return out


def gz(path: Path) -> Path:
    """``path`` gzipped beside it (``PATH.gz``)."""
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
    return out


# ---- gzipped archives: streamed, never inflated whole ---------------------------------------

def test_gzipped_real_archives_load_as_the_plain_ones(tmp_path):
    """``docker save | gzip`` and a gzipped OCI archive written by skopeo (compressed with the real ``gzip``)
    load the image the plain archives load, with the ID skopeo reads from them."""
    require("skopeo")
    from layerkit.examples import busybox_archive

    plain = busybox_archive(tmp_path / "bb.tar", tag="hostile/bb:gz")
    oci = tmp_path / "bb-oci.tar"
    run(["skopeo", "copy", "--quiet", f"docker-archive:{plain}", f"oci-archive:{oci}:hostile/bb:gz"])
    for src, transport in ((plain, "docker-archive"), (oci, "oci-archive")):
        want = "sha256:" + sha(run_bytes(["skopeo", "inspect", "--raw", "--config", f"{transport}:{src}"]))
        packed = Path(f"{src}.gz")
        with open(packed, "wb") as f:
            subprocess.run(["gzip", "-c", "-n", str(src)], stdout=f, check=True)
        for path in (src, packed):
            st = tmp_path / f"store-{path.name}"
            loaded = load_path(Store(st), str(path))
            assert [(li.id, li.tags) for li in loaded] == [(want, ["hostile/bb:gz"])], path
            assert list((st / "layerkit" / "tmp").iterdir()) == []


@pytest.mark.parametrize("where, nzeros", [("after-the-layers", 4 * GIB), ("before-the-layers", 2 * GIB)])
def test_gzip_bomb_in_an_unreferenced_member(store, tmp_path, where, nzeros):
    """A gzipped docker-archive of a few MB whose unreferenced member inflates to gigabytes of zeros: it
    loads, the bomb is never written anywhere (the store's tmp holds at most the real 10 KB layer) and
    peak RSS stays under 200 MB. Before, the whole archive was inflated into ``layerkit/tmp`` first."""
    img = Img.make(f"gzbomb-{where}")
    manifest = [("manifest.json", json.dumps([img.entry()]).encode())]
    before, after = (img.members(), manifest) if where == "after-the-layers" else ([], img.members() + manifest)
    path = gz_with_zeros(tmp_path / "bomb.tar.gz", before, "padding.bin", nzeros, after)
    assert path.stat().st_size < 8 << 20
    used = du(store)
    r = run_watched(store, "load", str(path))
    assert r.rc == 0, r.err
    assert f"Loaded image: {img.tag}" in r.out
    assert r.rss_mb < RSS_LIMIT_MB, r.rss_mb
    assert r.tmp_peak < 1 << 20, r.tmp_peak
    assert du(store) - used < 2 << 20
    assert list((store / "layerkit" / "tmp").iterdir()) == []


def test_gzip_bomb_as_the_referenced_layer(store, tmp_path):
    """A gzipped docker-archive whose referenced layer.tar inflates to 512 MiB of zeros (its config claims
    another diff_id): the load fails with one line naming the layer, never writes more than that one layer
    to disk, stays under 200 MB, and leaves the store as it was."""
    claimed = "sha256:" + sha(b"not the layer")
    img = Img.make("gzbomb-layer", diff_id=claimed)
    path = gz_with_zeros(tmp_path / "bomb.tar.gz", [(img.config_name, img.config), (sha(img.layer), None)],
                         img.layer_name, GIB // 2, [("manifest.json", json.dumps([img.entry()]).encode())])
    before = snapshot(store)
    r = run_watched(store, "load", str(path))
    assert_refused_line(r, img.layer_name, claimed)
    assert r.rss_mb < RSS_LIMIT_MB, r.rss_mb
    assert r.tmp_peak <= GIB // 2 + (4 << 20), r.tmp_peak
    assert snapshot(store) == before
    assert list((store / "layerkit" / "tmp").iterdir()) == []


def test_gzip_oci_archive_with_a_bomb_blob(store, tmp_path):
    """The same for a ``.tar.gz`` OCI archive: an unreferenced 2 GiB blob is inflated, never written."""
    o = Oci.make("gzbomb-oci")
    layout = o.write(tmp_path / "layout")
    names = ["oci-layout", "index.json"] + [f"blobs/sha256/{p.name}" for p in (layout / "blobs/sha256").iterdir()]
    members = [(n, (layout / n).read_bytes()) for n in names]
    path = gz_with_zeros(tmp_path / "bomb-oci.tar.gz", members[:2], "blobs/sha256/" + "0" * 64, 2 * GIB,
                         members[2:])
    r = run_watched(store, "load", str(path))
    assert r.rc == 0, r.err
    assert "Loaded image: hostile/gzbomb-oci:v1" in r.out
    assert r.rss_mb < RSS_LIMIT_MB and r.tmp_peak < 1 << 20, (r.rss_mb, r.tmp_peak)


def test_truncated_gzip_archive_in_a_member(store, tmp_path, capsys):
    """A gzipped archive cut inside a layer member: refused as truncated, naming the archive."""
    img = Img.make("gz-cut", )
    full = gzip.compress(docker_archive(tmp_path / "full.tar", [img]).read_bytes(), mtime=0)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(full[: len(full) * 2 // 3])
    check_load_refused(capsys, store, cut, errors.InvalidArchive, [str(cut), "truncated"])


# ---- tar headers that lie -----------------------------------------------------------------------

@pytest.mark.parametrize("typ", [b"x", b"L"], ids=["pax", "gnu-longname"])
@pytest.mark.parametrize("packed", [False, True], ids=["tar", "gzip"])
def test_extended_header_claiming_gigabytes(store, tmp_path, typ, packed):
    """A PAX or GNU long-name header claiming 3 GiB (it was read whole into memory: 6.3 GB RSS from 3 MB)
    is refused at once, in a child process that stays small."""
    data = raw_header(b"././@LongLink", 3 * GIB, typ=typ) + b"path=x\n".ljust(3 << 20, b"\0")
    path = tmp_path / ("bomb.tar.gz" if packed else "bomb.tar")
    path.write_bytes(gzip.compress(data, mtime=0) if packed else data)
    before = snapshot(store)
    r = run_watched(store, "load", str(path), timeout=60)
    assert_refused_line(r, str(path), "more than 1048576")  # Go's cap on extended headers, 1 MiB
    assert r.rss_mb < RSS_LIMIT_MB, r.rss_mb
    assert snapshot(store) == before


NEG_512 = b"\xff" + ((1 << 88) - 512).to_bytes(11, "big")  # base-256 -512


@pytest.mark.parametrize("how", ["base256", "pax"])
def test_negative_member_size(store, tmp_path, how):
    """A member whose size is -512 (base-256 field, or a PAX ``size`` record) made the header reader step
    back onto the same header forever; now one line, at once."""
    img = Img.make(f"negsize-{how}")
    if how == "base256":
        evil = raw_header(b"manifest.json", NEG_512)
    else:
        rec = b"size=-512\n"
        rec = b"%d %s" % (len(rec) + 3, rec)
        evil = raw_member(b"PaxHeaders/manifest.json", rec, typ=b"x") + raw_header(b"manifest.json", 0)
    path = tmp_path / "neg.tar"
    path.write_bytes(tar_head(img.members()) + evil + b"\0" * 1024)
    before = snapshot(store)
    r = run_watched(store, "load", str(path), timeout=60)
    assert_refused_line(r, "manifest.json", "negative size" if how == "base256" else "size=-512")
    assert r.seconds < 30 and r.rss_mb < RSS_LIMIT_MB
    assert snapshot(store) == before


def test_member_beyond_the_end_of_the_file(store, tmp_path, capsys):
    """A member header claiming more data than the file has: truncated archive."""
    img = Img.make("beyond-end")
    data = tar_head(img.members()) + raw_header(b"manifest.json", 10 << 20) + b"[]"
    path = tmp_path / "beyond.tar"
    path.write_bytes(data)
    check_load_refused(capsys, store, path, errors.InvalidArchive, [str(path), "truncated"])


# ---- member names and links ---------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["../evil", "/abs/evil", "a/../../evil", "./../evil", "blobs/sha256/../../../x"])
@pytest.mark.parametrize("kind", ["docker", "oci", "docker-gzip"])
def test_member_name_climbs_out(store, tmp_path, capsys, evil, kind):
    """A member named with ``..`` or an absolute path, in each archive form: refused before anything is
    read, naming the member."""
    if kind == "oci":
        layout = Oci.make("evil-name-oci").write(tmp_path / "layout")
        path = tar_dir(layout, tmp_path / "evil.tar")
        path.write_bytes(tar_bytes([(evil, b"x")] + [(m.name, m.data) for m in _members(path)]))
    else:
        path = docker_archive(tmp_path / "evil.tar", [Img.make("evil-name")], extra=[(evil, b"pwned\n")])
        if kind == "docker-gzip":
            path = gz(path)
    line = check_load_refused(capsys, store, path, errors.InvalidArchive, [evil])
    assert "absolute path or '..'" in line


@dataclass
class _M:
    name: str
    data: bytes


def _members(path: Path) -> list[_M]:
    with tarfile.open(path) as tf:
        return [_M(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]


@pytest.mark.parametrize("target, expect", [
    ("/etc/passwd", "links to absolute path"),
    ("../../../etc/passwd", "absolute path or '..'"),
    ("sub/../../../outside.json", "absolute path or '..'"),
    ("loop-a", "too many levels of links"),
])
@pytest.mark.parametrize("victim", ["manifest.json", "config", "layer"])
def test_symlink_member_points_out(store, tmp_path, capsys, target, expect, victim):
    """A member the load reads (manifest.json, the config, a layer) that is a symlink out of the archive,
    or into a loop: refused naming it; nothing outside the archive is read."""
    img = Img.make(f"symlink-{victim}-{sha(target.encode())[:6]}")
    name = {"manifest.json": "manifest.json", "config": img.config_name, "layer": img.layer_name}[victim]
    members = [m for m in img.members() if m[0] != name]
    loop = [("loop-a", None, tarfile.SYMTYPE, "loop-b"), ("loop-b", None, tarfile.SYMTYPE, "loop-a")]
    if target == "loop-a" and "/" in name:
        target = "../loop-a"  # relative to the layer's directory
    link = [(name, None, tarfile.SYMTYPE, target)]
    doc = json.dumps([img.entry()]).encode()
    if victim == "manifest.json":
        all_members = members + loop + link
    else:
        all_members = members + loop + link + [("manifest.json", doc)]
    path = tmp_path / "link.tar"
    path.write_bytes(tar_bytes(all_members))
    check_load_refused(capsys, store, path, errors.InvalidArchive, [expect])


@pytest.mark.parametrize("target", ["/etc/passwd", "../../etc/passwd", "a/../../../etc/hostname"])
def test_hardlink_member_to_an_outside_name(store, tmp_path, capsys, target):
    """A hardlink member whose target is outside the archive: refused when the archive is opened, whether
    or not the load would read it."""
    img = Img.make("hardlink-out-" + sha(target.encode())[:6])
    path = docker_archive(tmp_path / "hl.tar", [img], extra=[("innocent.json", None, tarfile.LNKTYPE, target)])
    check_load_refused(capsys, store, path, errors.InvalidArchive, [target, "absolute path or '..'"])


def test_links_inside_the_archive_are_followed(store, tmp_path):
    """What real docker-archives do (Docker before 25 writes a repeated layer as a symlink to the first
    copy): a symlink and a hardlink that stay inside the archive load."""
    a, b = Img.make("inner-link-a"), Img.make("inner-link-b")
    b.layer = a.layer
    b.config = config_for(["sha256:" + sha(a.layer)], "inner-link-b")
    other = "f" * 64 + "/layer.tar"
    entry_b = {**b.entry(), "Layers": [other]}
    members = a.members() + [(b.config_name, b.config), ("f" * 64, None),
                             (other, None, tarfile.SYMTYPE, "../" + a.layer_name),
                             ("manifest.json", None, tarfile.LNKTYPE, "real-manifest.json")]
    path = tmp_path / "links.tar"
    path.write_bytes(tar_bytes([("real-manifest.json", json.dumps([a.entry(), entry_b]).encode())] + members))
    st = tmp_path / "store"
    loaded = load_path(Store(st), str(path))
    assert sorted(t for li in loaded for t in li.tags) == [a.tag, b.tag]


@pytest.mark.parametrize("dup", ["manifest.json", "config", "layer"])
@pytest.mark.parametrize("packed", [False, True], ids=["tar", "gzip"])
def test_duplicate_member_names(store, tmp_path, capsys, dup, packed):
    """A member name that appears twice: tar extraction keeps the last, Go's archive/tar readers (skopeo)
    take the first, so the two would load different images; refused, naming it."""
    img = Img.make(f"dup-{dup}-{packed}")
    name = {"manifest.json": "manifest.json", "config": img.config_name, "layer": img.layer_name}[dup]
    second = {"manifest.json": b"[]", "config": b"{}", "layer": layer_of("other")}[dup]
    path = docker_archive(tmp_path / "dup.tar", [img], extra=[(name, second)])
    if packed:
        path = gz(path)
    check_load_refused(capsys, store, path, errors.InvalidArchive, [name, "appears twice"])


@pytest.mark.parametrize("times", [False, True], ids=["prefix-text", "prefix-times"])
def test_gnu_prefix_field_is_read_as_the_layer_reader_reads_it(store, tmp_path, capsys, times):
    """A header with GNU magic keeps access and change times in the ustar prefix field, which Python's
    tarfile always prepends as a path prefix. The outer archive is read by the layer indexer's own reader,
    which follows Go's ``archive/tar`` (what Docker and skopeo read with): the field is a prefix only when
    it does not parse as the two times. With text there (``decoy``) both members are
    ``decoy/manifest.json``: the archive has no manifest.json and names one member twice, refused in one
    line; with times there the GNU member is ``manifest.json`` and loads (tag a), the POSIX one stays
    ``decoy/manifest.json``."""
    a, b = Img.make(f"gnu-prefix-a-{int(times)}"), Img.make(f"gnu-prefix-b-{int(times)}")
    field = b"00000000000\x0000000000000\x00" if times else b"decoy"
    gnu = raw_member(b"manifest.json", json.dumps([a.entry()]).encode(), magic=b"ustar  \x00", prefix=field)
    posix = raw_member(b"manifest.json", json.dumps([b.entry()]).encode(), prefix=b"decoy")
    path = tmp_path / "gnu.tar"
    path.write_bytes(tar_head(a.members() + b.members()) + gnu + posix + b"\0" * 1024)
    with open(path, "rb") as f:
        seen = [h.name for h in iter_headers(FileReader(f))]
    if not times:
        assert seen[-2:] == ["decoy/manifest.json", "decoy/manifest.json"]
        check_load_refused(capsys, store, path, errors.InvalidArchive, ["decoy/manifest.json", "twice"])
        return
    assert seen[-2:] == ["manifest.json", "decoy/manifest.json"]
    with tarfile.open(path) as tf:  # the disagreement this guards against is real
        assert [m.name for m in tf.getmembers()][-1] == "decoy/manifest.json"
    loaded = load_path(Store(tmp_path / "store"), str(path))
    assert [t for li in loaded for t in li.tags] == [a.tag]


def test_member_that_is_not_a_file(store, tmp_path, capsys):
    """manifest.json as a FIFO member: refused, naming it."""
    img = Img.make("fifo-manifest")
    path = tmp_path / "fifo.tar"
    path.write_bytes(tar_bytes(img.members() + [("manifest.json", None, tarfile.FIFOTYPE, "")]))
    check_load_refused(capsys, store, path, errors.InvalidArchive, ["manifest.json", "not a regular file"])


# ---- descriptors whose size is not their blob's -------------------------------------------------

def _lie(o: Oci, what: str, delta: int) -> tuple[str, int, int]:
    """Make one descriptor of ``o`` lie about its blob's size by ``delta``; (digest, actual, claimed)."""
    if what == "manifest":
        actual = len(o.manifest_bytes)
        o.manifest_size = actual + delta
        return "sha256:" + sha(o.manifest_bytes), actual, actual + delta
    desc = o.manifest["config"] if what == "config" else o.manifest["layers"][0]
    desc["size"] += delta
    return desc["digest"], desc["size"] - delta, desc["size"]


@pytest.mark.parametrize("what, delta", [("manifest", 1), ("manifest", -1), ("config", 1), ("config", -7),
                                         ("layer", 1), ("layer", -512), ("layer", 1 << 40)])
@pytest.mark.parametrize("form", ["layout", "archive", "archive-gzip"])
def test_descriptor_size_differs_from_its_blob(store, tmp_path, capsys, what, delta, form):
    """A manifest, config or layer descriptor whose size is not its blob's (the image spec: such content
    "SHOULD NOT be trusted"): refused before the blob is read, naming the digest and both sizes."""
    o = Oci.make(f"size-lie-{what}-{delta}-{form}")
    digest, actual, claimed = _lie(o, what, delta)
    path = o.write(tmp_path / "layout")
    if form != "layout":
        path = tar_dir(path, tmp_path / "oci.tar", gz=form == "archive-gzip")
    check_load_refused(capsys, store, path, errors.InvalidArchive,
                       [digest, f"has {actual} bytes", f"says {claimed}"])


def test_config_size_lie_is_refused_by_skopeo_too(tmp_path):
    """The real tool agrees on the config (skopeo 1.9: "Size mismatch when copying"). (It still accepts a
    lying layer or manifest size, which the spec says not to trust; layerkit refuses those too, above.)"""
    require("skopeo")
    o = Oci.make("size-lie-skopeo")
    _lie(o, "config", 1)
    layout = o.write(tmp_path / "layout")
    r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:docker.io/hostile/size-lie-skopeo:v1",
                        f"oci:{tmp_path / 'out'}:x"], capture_output=True, text=True)
    assert r.returncode != 0 and "Size mismatch" in r.stderr, r.stderr
    with pytest.raises(errors.InvalidArchive, match="descriptor says"):
        load_path(Store(tmp_path / "store"), str(layout))


def test_nested_index_descriptor_size_lie(store, tmp_path, capsys):
    """index.json -> an image index blob -> the manifest: the nested index's descriptor lies."""
    o = Oci.make("size-lie-nested")
    mbytes = o.manifest_bytes
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + sha(mbytes), "size": len(mbytes) + 3,
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    o.index["manifests"][0] = {"mediaType": OCI_INDEX, "digest": "sha256:" + sha(nested), "size": len(nested),
                               "annotations": {REF_NAME: "docker.io/hostile/size-lie-nested:v1"}}
    path = o.write(tmp_path / "layout", blobs={"sha256:" + sha(nested): nested})
    check_load_refused(capsys, store, path, errors.InvalidArchive,
                       ["sha256:" + sha(mbytes), f"has {len(mbytes)} bytes", f"says {len(mbytes) + 3}"])


def test_docker_25_archive_descriptor_size_lie(store, tmp_path, capsys):
    """The form Docker 25+ saves: manifest.json naming ``blobs/sha256/...`` and an OCI layout beside it.
    Loaded through manifest.json, but a layout descriptor that lies about its blob is refused too."""
    o = Oci.make("docker25-lie")
    digest, actual, claimed = _lie(o, "layer", 100)
    layout = o.write(tmp_path / "layout")
    entry = {"Config": f"blobs/sha256/{sha(o.config)}", "RepoTags": ["hostile/docker25-lie:v1"],
             "Layers": [f"blobs/sha256/{sha(o.layer)}"]}
    (layout / "manifest.json").write_text(json.dumps([entry]))
    names = ["oci-layout", "index.json", "manifest.json"] + [
        f"blobs/sha256/{p.name}" for p in (layout / "blobs/sha256").iterdir()]
    path = tmp_path / "docker25.tar"
    path.write_bytes(tar_bytes([(n, (layout / n).read_bytes()) for n in names]))
    check_load_refused(capsys, store, path, errors.InvalidArchive, [digest, f"says {claimed}"])
    layout = Oci.make("docker25-lie").write(tmp_path / "ok")  # the honest archive loads
    (layout / "manifest.json").write_text(json.dumps([entry]))
    names = ["oci-layout", "index.json", "manifest.json"] + [
        f"blobs/sha256/{p.name}" for p in (layout / "blobs/sha256").iterdir()]
    ok = tmp_path / "docker25-ok.tar"
    ok.write_bytes(tar_bytes([(n, (layout / n).read_bytes()) for n in names]))
    assert [li.tags for li in load_path(Store(tmp_path / "store"), str(ok))] == [["hostile/docker25-lie:v1"]]


@pytest.mark.parametrize("size", [None, "12", -1, 1.5, True])
def test_descriptor_without_a_valid_size(store, tmp_path, capsys, size):
    """The size is REQUIRED (an int64): missing, a string, negative, a float or a boolean is refused."""
    o = Oci.make(f"size-invalid-{size}")
    if size is None:
        del o.manifest["layers"][0]["size"]
    else:
        o.manifest["layers"][0]["size"] = size
    path = o.write(tmp_path / "layout")
    check_load_refused(capsys, store, path, errors.InvalidManifest, ["lacks a valid size"])


# ---- JSON documents: depth, shape, size ---------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("doc", ["manifest.json", "config"])
def test_deeply_nested_json_in_a_docker_archive(store, tmp_path, capsys, doc):
    """JSON nested 10^5 deep (a RecursionError traceback before): one line naming the member."""
    img = Img.make(f"deep-{doc}")
    if doc == "config":
        img.config = b'{"rootfs": ' + DEEP + b"}"
        name = img.config_name
        path = docker_archive(tmp_path / "deep.tar", [img])
    else:
        name = "manifest.json"
        path = docker_archive(tmp_path / "deep.tar", [img], manifest=DEEP)
    check_load_refused(capsys, store, path, errors.InvalidManifest, [name, "nested too deeply"])


@pytest.mark.parametrize("doc", ["index.json", "manifest", "config", "oci-layout"])
def test_deeply_nested_json_in_an_oci_layout(store, tmp_path, capsys, doc):
    """The same for each document of an OCI layout."""
    o = Oci.make(f"deep-oci-{doc}")
    blobs = {}
    path = o.write(tmp_path / "layout")
    if doc == "index.json":
        (path / "index.json").write_bytes(b'{"manifests": ' + DEEP + b"}")
    elif doc == "oci-layout":
        (path / "oci-layout").write_bytes(DEEP)
    else:
        # a blob named by its own digest and described with its true size, so only its depth is wrong
        deep = b'{"config": ' + DEEP + b"}" if doc == "manifest" else b'{"rootfs": ' + DEEP + b"}"
        digest = "sha256:" + sha(deep)
        if doc == "manifest":
            o.index["manifests"][0].update(digest=digest, size=len(deep))
        else:
            o.manifest["config"].update(digest=digest, size=len(deep))
            o.index["manifests"][0].update(digest="")
        blobs[digest] = deep
        path = o.write(tmp_path / "layout2", blobs=blobs)
    check_load_refused(capsys, store, path, errors.InvalidManifest, ["nested too deeply"])


def _shape(kind: str, case: str, o: Oci, img: Img) -> tuple[object, list[str]]:
    """Alter one document to the wrong JSON shape; (what to write, words the error must hold)."""
    if kind == "docker":
        e = img.entry()
        cases = {
            "manifest-object": ({"Config": img.config_name}, ["manifest.json", "non-empty list"]),
            "entry-string": (["just a string"], ["manifest.json entry 0"]),
            "layers-string": ([{**e, "Layers": "abc/layer.tar"}], ["manifest.json entry 0", "Layers"]),
            "config-number": ([{**e, "Config": 5}], ["manifest.json entry 0", "Config"]),
            "repotags-string": ([{**e, "RepoTags": img.tag}], ["manifest.json entry 0", "RepoTags"]),
            "layer-number": ([{**e, "Layers": [7]}], ["manifest.json entry 0", "non-string layer"]),
        }
        return cases[case]
    cases = {
        "index-list": ("index", [], ["index.json", "not a JSON object"]),
        "manifests-object": ("index", {"manifests": {}}, ["index.json manifests", "not a JSON array"]),
        "annotations-list": ("entry", {"annotations": ["x"]}, ["annotations", "not an object of strings"]),
        "annotation-number": ("entry", {"annotations": {REF_NAME: 5}}, ["annotations"]),
        "platform-string": ("entry", {"platform": "linux/amd64"}, ["invalid platform"]),
        "mediatype-number": ("entry", {"mediaType": 5}, ["invalid mediaType"]),
        "layers-string": ("manifest", {"layers": "x"}, ["lacks config or layers"]),
        "config-list": ("manifest", {"config": []}, ["config", "descriptor lacks a valid digest"]),
        "layer-entry-string": ("manifest", {"layers": ["sha256:" + "0" * 64]}, ["layer",
                                                                               "descriptor lacks a valid digest"]),
        "rootfs-list": ("config", {"rootfs": []}, ["rootfs.diff_ids"]),
        "history-object": ("config", {"history": {}}, ["history"]),
        "oci-layout-list": ("layout", [], ["oci-layout lacks imageLayoutVersion"]),
    }
    return cases[case]


DOCKER_SHAPES = ["manifest-object", "entry-string", "layers-string", "config-number", "repotags-string",
                 "layer-number"]
OCI_SHAPES = ["index-list", "manifests-object", "annotations-list", "annotation-number", "platform-string",
              "mediatype-number", "layers-string", "config-list", "layer-entry-string", "rootfs-list",
              "history-object", "oci-layout-list"]


@pytest.mark.parametrize("case", DOCKER_SHAPES)
def test_wrong_json_shape_in_a_docker_archive(store, tmp_path, capsys, case):
    """manifest.json of the wrong shape (an object for the list, a string for a list, a number for a
    name): one line naming manifest.json and the entry."""
    img = Img.make(f"shape-{case}")
    doc, words = _shape("docker", case, Oci.make("unused"), img)
    path = docker_archive(tmp_path / "shape.tar", [img], manifest=doc)
    check_load_refused(capsys, store, path, errors.InvalidManifest, words)


@pytest.mark.parametrize("case", OCI_SHAPES)
def test_wrong_json_shape_in_an_oci_layout(store, tmp_path, capsys, case):
    """index.json, a descriptor, a manifest, a config or oci-layout of the wrong shape: one line each."""
    o = Oci.make(f"shape-{case}")
    where, change, words = _shape("oci", case, o, Img.make("unused"))
    layout_doc = None
    if where == "index":
        o.index = change
    elif where == "entry":
        o.index["manifests"][0].update(change)
    elif where == "manifest":
        o.manifest.update(change)
    elif where == "config":
        cfg = json.loads(o.config)
        cfg.update(change)
        o.config = json.dumps(cfg).encode()
        o.manifest["config"].update(digest="sha256:" + sha(o.config), size=len(o.config))
    else:
        layout_doc = change
    path = o.write(tmp_path / "layout")
    if layout_doc is not None:
        (path / "oci-layout").write_text(json.dumps(layout_doc))
    check_load_refused(capsys, store, path, errors.InvalidManifest, words)


def test_document_too_large_or_too_many_values(store, tmp_path, capsys):
    """A manifest.json over the 16 MiB document cap, and one of 1.2 million tiny values (8 MiB of ``[],``
    parsed to 180 MB of objects): refused before parsing."""
    img = Img.make("doc-caps")
    big = docker_archive(tmp_path / "big.tar", [img], manifest=b"[" + b" " * (17 << 20) + b"]")
    check_load_refused(capsys, store, big, errors.InvalidManifest, ["manifest.json", "too large"])
    many = docker_archive(tmp_path / "many.tar", [img], manifest=b"[" + b"[]," * 1_200_000 + b"[]]")
    check_load_refused(capsys, store, many, errors.InvalidManifest, ["manifest.json", "too many JSON values"])


# ---- leftovers of killed loads (item 9) --------------------------------------------------------

def _zeros_layer_archive(tmp_path: Path, seed: str, size: int, honest: bool) -> tuple[Path, Img]:
    """A gzipped docker-archive whose one layer is ``size`` zero bytes (a valid, empty tar): slow enough to
    load that a test can catch the load mid-way. ``honest``: its config gives the right diff_id."""
    diff_id = "sha256:" + (_zeros_sha(size) if honest else sha(b"wrong"))
    img = Img.make(seed, diff_id=diff_id)
    layer_name = "0" * 64 + "/layer.tar"
    entry = {**img.entry(), "Layers": [layer_name]}
    path = gz_with_zeros(tmp_path / f"{seed}.tar.gz", [(img.config_name, img.config), ("0" * 64, None)],
                         layer_name, size, [("manifest.json", json.dumps([entry]).encode())])
    return path, img


def _zeros_sha(size: int) -> str:
    h = hashlib.sha256()
    block = b"\0" * (16 << 20)
    for _ in range(size // len(block)):
        h.update(block)
    h.update(b"\0" * (size % len(block)))
    return h.hexdigest()


def _wait_for_partial(proc: subprocess.Popen, tmp: Path, at_least: int = 32 << 20) -> Path:
    """Wait until the child has a ``blob-*.partial`` of at least ``at_least`` bytes in ``tmp``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the load ended before it could be interrupted"
        for p in tmp.glob("blob-*.partial") if tmp.is_dir() else []:
            try:
                if p.stat().st_size >= at_least:
                    return p
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    raise AssertionError("no temporary blob appeared")


def test_killed_load_leaves_nothing_after_the_next_load(tmp_path):
    """``layerkit load`` killed with SIGKILL mid-layer leaves its ``blob-*.partial`` (nothing can remove it
    at that moment); the next load into the store removes it, loads its own image, and the store is one
    skopeo reads. Before, every killed load left its partial blob forever."""
    require("skopeo")
    st = tmp_path / "store"
    big, _ = _zeros_layer_archive(tmp_path, "killed", 2 * GIB, honest=False)
    proc = subprocess.Popen(lk("--store", str(st), "load", str(big)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    partial = _wait_for_partial(proc, st / "layerkit" / "tmp")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists()  # the leftover this test is about
    small = docker_archive(tmp_path / "small.tar", [Img.make("after-kill")])
    r = subprocess.run(lk("--store", str(st), "load", str(small)), capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert list((st / "layerkit" / "tmp").iterdir()) == []
    assert du(st) < 1 << 20
    raw = run_bytes(["skopeo", "inspect", "--raw", f"oci:{st}:docker.io/hostile/after-kill:v1"])
    assert json.loads(raw)["config"]["digest"] == "sha256:" + sha(Img.make("after-kill").config)


def test_a_live_loads_temporary_blob_is_never_removed(tmp_path):
    """Two loads into one store: the first, stopped (SIGSTOP) while it writes a 512 MiB layer, keeps its
    locked temporary blob while a second load runs to the end (which cleans stale files on its first
    write); continued, the first finishes and its image is there."""
    st = tmp_path / "store"
    big, img = _zeros_layer_archive(tmp_path, "live", GIB // 2, honest=True)
    proc = subprocess.Popen(lk("--store", str(st), "load", str(big)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    try:
        partial = _wait_for_partial(proc, st / "layerkit" / "tmp")
        proc.send_signal(signal.SIGSTOP)
        small = docker_archive(tmp_path / "small.tar", [Img.make("beside-live")])
        r = subprocess.run(lk("--store", str(st), "load", str(small)), capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
        assert partial.exists()
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"Loaded image: {img.tag}" in out.decode()
    tags = {t.familiar for img in Store(st).images() for t in img.tags}
    assert tags == {img.tag, "hostile/beside-live:v1"}
    assert list((st / "layerkit" / "tmp").iterdir()) == []


# ---- the registry pull path --------------------------------------------------------------------

def test_registry_descriptor_size_lies(tmp_path):
    """A real docker-registry serving a manifest whose config descriptor lies about its size, and an index
    whose manifest descriptor does: ``pull`` refuses each with one line naming the digest and both sizes
    (skopeo refuses the config one as well)."""
    require("skopeo")
    from services import start_registry

    reg = start_registry(tmp_path / "registry")
    try:
        base = f"http://{reg.host}/v2/hostile/lie"

        def put_blob(data: bytes) -> str:
            digest = "sha256:" + sha(data)
            loc = requests.post(f"{base}/blobs/uploads/", timeout=10).headers["Location"]
            r = requests.put(loc, params={"digest": digest}, data=data, timeout=10,
                             headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            return digest

        def put_manifest(ref: str, doc: dict) -> bytes:
            data = json.dumps(doc).encode()
            r = requests.put(f"{base}/manifests/{ref}", data=data, headers={"Content-Type": doc["mediaType"]},
                             timeout=10)
            assert r.status_code == 201, r.text
            return data

        o = Oci.make("registry-lie")
        put_blob(o.layer)
        put_blob(o.config)
        honest = put_manifest("honest", o.manifest)
        put_manifest("index", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": "sha256:" + sha(honest), "size": len(honest) + 5,
             "platform": {"os": "linux", "architecture": "amd64"}}]})
        digest, actual, claimed = _lie(o, "config", 1)
        put_manifest("config", o.manifest)
        cases = {"config": (digest, actual, claimed), "index": ("sha256:" + sha(honest), len(honest),
                                                                 len(honest) + 5)}
        for ref, (digest, actual, claimed) in cases.items():
            st = tmp_path / f"store-{ref}"
            r = run_watched(st, "pull", f"{reg.host}/hostile/lie:{ref}", timeout=60)
            assert_refused_line(r, digest, f"has {actual} bytes", f"says {claimed}")
            assert not (st / "index.json").exists() or not json.loads((st / "index.json").read_text())["manifests"]
        r = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                            f"docker://{reg.host}/hostile/lie:config", f"oci:{tmp_path / 'sk'}:x"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "Size mismatch" in r.stderr, r.stderr
        ok = run_watched(tmp_path / "store-ok", "pull", f"{reg.host}/hostile/lie:honest", timeout=60)
        assert ok.rc == 0, ok.err
    finally:
        reg.stop()


def test_member_name_with_a_newline_stays_on_one_line(store, tmp_path, capsys):
    """A PAX path may hold a newline; the error naming such a member (here a layer that is not what its
    config says) shows it escaped, so it is still one line."""
    img = Img.make("newline-name", diff_id="sha256:" + sha(b"another"))
    name = "bad\nname/layer.tar"
    path = docker_archive(tmp_path / "nl.tar", [], manifest=[{**img.entry(), "Layers": [name]}],
                          extra=[(img.config_name, img.config), (name, img.layer)])
    check_load_refused(capsys, store, path, errors.DigestMismatch, [repr(name)])


# ---- fuzz: the outer archive reader and the loaders --------------------------------------------

@functools.cache
def _fuzz_bases() -> tuple[bytes, bytes]:
    """A two-image docker-archive and a one-image OCI archive to mutate."""
    with tempfile.TemporaryDirectory() as d:
        docker = docker_archive(Path(d) / "a.tar", [Img.make("fuzz-1"), Img.make("fuzz-2")]).read_bytes()
        oci = tar_dir(Oci.make("fuzz-oci").write(Path(d) / "layout"), Path(d) / "o.tar").read_bytes()
    return docker, oci


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=hst.sampled_from(["docker", "oci"]), packed=hst.booleans(),
       edits=hst.lists(hst.tuples(hst.sampled_from(["set", "cut", "insert"]), hst.floats(0, 1),
                                  hst.binary(min_size=1, max_size=16), hst.integers(1, 700)), min_size=1, max_size=6))
def test_fuzzed_archives_fail_only_with_layerkit_errors(tmp_path, which, packed, edits):
    """Archives with bytes changed, cut out or inserted anywhere (headers, JSON, layers), plain or gzipped:
    ``load`` either loads them or raises a LayerkitError (one line), never another exception, and leaves
    no temporary file."""
    data = bytearray(_fuzz_bases()[which == "oci"])
    for op, where, blob, n in edits:
        pos = int(where * (len(data) - 1))
        if op == "set":
            data[pos:pos + len(blob)] = blob
        elif op == "cut":
            del data[pos:pos + n]
        else:
            data[pos:pos] = blob
    path = tmp_path / "fuzz.tar"
    path.write_bytes(gzip.compress(bytes(data), mtime=0) if packed else bytes(data))
    root = tmp_path / f"store-{len(list(tmp_path.iterdir()))}"
    try:
        load_path(Store(root), str(path))
    except errors.LayerkitError as exc:
        assert "\n" not in str(exc)
    tmp = root / "layerkit" / "tmp"
    assert not tmp.is_dir() or list(tmp.iterdir()) == []

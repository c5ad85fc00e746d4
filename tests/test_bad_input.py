"""Bad input: every malformed archive, layout, reference or path is refused cleanly.

For each case (issue 2, "Bad input") the CLI exits 1 with exactly one ``layerkit: error: ...`` line on
stderr that names the offending file, digest, member or reference; the Python API raises the specific
:class:`~layerkit.errors.LayerkitError` subclass; and the store is byte-for-byte what it was before
(every file's path and content hashed, only the ``layerkit/lock`` file excluded), with nothing left in
``layerkit/tmp``.

The malformed inputs are built here with :mod:`tarfile` and :mod:`json` from tiny layers made up per
case, so that each corrupt layer is new to the store (a layer the store already holds is deliberately
not read again, which would hide the corruption).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from layerkit import errors
from layerkit.cli import main
from layerkit.engine.layer import LayerFormatError
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive
from layerkit.formats.load import load_path

EPOCH = 1704067200
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


# ---- the store and how to compare it ------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding busybox, loaded through the CLI."""
    root = tmp_path_factory.mktemp("bad-input")
    archive = busybox_archive(root / "busybox.tar")
    st = root / "store"
    assert main(["--store", str(st), "load", str(archive)]) == 0
    assert (st / "index.json").is_file()
    return st


@pytest.fixture
def work(tmp_path) -> Path:
    """A scratch directory for the bad inputs of one case."""
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under the store (directories marked, files and links with their content's sha256)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(root)) + "/"] = "link:" + os.readlink(p) if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            rel = str(p.relative_to(root))
            if rel == "layerkit/lock":
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_store_clean(store: Path, before: dict[str, str]) -> None:
    """The store is exactly as it was, and no temporary blob was left behind."""
    after = snapshot(store)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"store changed: added={added} removed={removed} changed={changed}"
    tmp = store / "layerkit" / "tmp"
    leftovers = sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []
    assert leftovers == [], f"leftover temporary files in {tmp}: {leftovers}"


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process and return (status, stdout, stderr)."""
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def check_refused(
    capsys,
    store: Path,
    argv: list[str],
    api: Callable[[Store], object],
    exc: type[errors.LayerkitError],
    names: list[str],
) -> str:
    """Run one bad input through the CLI and the API; assert the contract of issue 2. Returns the line."""
    before = snapshot(store)
    rc, out, err = run_cli(capsys, ["--store", str(store), *argv])
    lines = err.splitlines()
    assert rc == 1, f"exit status {rc}, stderr: {err!r}"
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines!r}"
    line = lines[0]
    assert line.startswith("layerkit: error: "), line
    assert len(line) > len("layerkit: error: ") + 5, line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    assert out == "", f"unexpected stdout: {out!r}"
    assert_store_clean(store, before)

    with pytest.raises(errors.LayerkitError) as info:
        api(Store(store))
    assert info.type is exc, f"API raised {info.type.__name__}: {info.value}, expected {exc.__name__}"
    for name in names:
        assert name in str(info.value), f"{name!r} not named in {info.value}"
    assert "\n" not in str(info.value)
    assert_store_clean(store, before)
    return line


def check_load_refused(capsys, store: Path, path: Path | str, exc: type[errors.LayerkitError],
                       names: list[str]) -> str:
    """``layerkit load PATH`` and ``load_path(store, PATH)`` both refuse PATH."""
    return check_refused(capsys, store, ["load", str(path)], lambda st: load_path(st, str(path)), exc, names)


# ---- building inputs ---------------------------------------------------------------------------

def sha(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def tar_bytes(members: list[tuple[str, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar in memory; a member whose data is None is a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = EPOCH
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def tiny_layer(seed: str, size: int = 0) -> bytes:
    """A small layer tar unique to ``seed`` (new to the store), optionally with ``size`` bytes of data."""
    body = hashlib.shake_256(seed.encode()).digest(size) if size else b""
    return tar_bytes([("etc", None), (f"etc/{seed}.txt", f"made for {seed}\n".encode()),
                      ("data.bin", body)])


def config_for(diff_ids: list[str], seed: str) -> bytes:
    """An image config for the given layers."""
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Labels": {"case": seed}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ADD {seed} /"} for _ in diff_ids],
    }
    return json.dumps(cfg, separators=(",", ":")).encode()


@dataclass
class DockerImage:
    """The pieces of one image in a classic docker-archive; tests alter them before writing."""

    seed: str
    tag: str | None = None
    layers: list[bytes] = field(default_factory=list)
    config: bytes = b""
    config_name: str = ""
    layer_names: list[str] = field(default_factory=list)
    layer_members: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def make(cls, seed: str, nlayers: int = 1, size: int = 0) -> DockerImage:
        """A valid image: ``nlayers`` tiny layers, a config naming their diff_ids, tagged ``bad/SEED``."""
        layers = [tiny_layer(f"{seed}-{i}", size) for i in range(nlayers)]
        diff_ids = ["sha256:" + sha(la) for la in layers]
        config = config_for(diff_ids, seed)
        names = [f"{sha(la)}/layer.tar" for la in layers]
        return cls(seed, f"bad/{seed}:v1", layers, config, sha(config) + ".json", names,
                   dict(zip(names, layers, strict=True)))

    def manifest_entry(self) -> dict:
        """This image's entry of manifest.json."""
        return {"Config": self.config_name, "RepoTags": [self.tag] if self.tag else None,
                "Layers": self.layer_names}


def docker_archive(path: Path, images: list[DockerImage], manifest: bytes | object | None = None,
                   extra: list[tuple[str, bytes | None]] = (), skip: set[str] = frozenset()) -> Path:
    """Write a classic docker-archive (config, ``HEX/`` dirs with ``layer.tar``, manifest.json last)."""
    members: list[tuple[str, bytes | None]] = list(extra)
    for img in images:
        members.append((img.config_name, img.config))
        for name, data in img.layer_members.items():
            members.append((name.rsplit("/", 1)[0], None))
            members.append((name, data))
    if manifest is None:
        manifest = [img.manifest_entry() for img in images]
    if not isinstance(manifest, bytes):
        manifest = json.dumps(manifest).encode()
    members.append(("manifest.json", manifest))
    path.write_bytes(tar_bytes([m for m in members if m[0] not in skip]))
    return path


@dataclass
class OciImage:
    """The blobs of one image in an OCI layout; tests alter them before writing."""

    seed: str
    layer: bytes
    config: bytes
    layer_type: str = OCI_LAYER
    manifest_doc: dict = field(default_factory=dict)

    @classmethod
    def make(cls, seed: str, gzipped: bool = False) -> OciImage:
        """A valid one-layer image."""
        tar = tiny_layer(seed)
        blob = gzip.compress(tar, mtime=0) if gzipped else tar
        config = config_for(["sha256:" + sha(tar)], seed)
        img = cls(seed, blob, config, OCI_LAYER_GZIP if gzipped else OCI_LAYER)
        img.manifest_doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + sha(config), "size": len(config)},
            "layers": [{"mediaType": img.layer_type, "digest": "sha256:" + sha(blob), "size": len(blob)}],
        }
        return img

    @property
    def layer_digest(self) -> str:
        """Digest of the (unaltered) layer blob, as the manifest names it."""
        return self.manifest_doc["layers"][0]["digest"]


def oci_layout(root: Path, img: OciImage, tag: str = "v1", manifest: bytes | None = None,
               index: bytes | object | None = None, manifest_type: str = OCI_MANIFEST,
               blobs: dict[str, bytes] | None = None, skip: set[str] = frozenset()) -> Path:
    """Write an OCI layout: blobs named by the digests the manifest gives, then index.json.

    ``blobs`` overrides the content written under a digest (a corrupt blob keeps its name); ``skip``
    leaves a digest's blob out.
    """
    mbytes = manifest if manifest is not None else json.dumps(img.manifest_doc).encode()
    content = {"sha256:" + sha(mbytes): mbytes, "sha256:" + sha(img.config): img.config,
               "sha256:" + sha(img.layer): img.layer}
    content.update(blobs or {})
    (root / "blobs" / "sha256").mkdir(parents=True)
    for digest, data in content.items():
        if digest not in skip:
            (root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    if index is None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": manifest_type, "digest": "sha256:" + sha(mbytes), "size": len(mbytes),
             "annotations": {REF_NAME: f"docker.io/bad/{img.seed}:{tag}"}}]}
    (root / "index.json").write_bytes(index if isinstance(index, bytes) else json.dumps(index).encode())
    return root


def tar_dir(src: Path, out: Path) -> Path:
    """An OCI archive: the layout's files in a tar, ``oci-layout`` and ``index.json`` first."""
    names = ["oci-layout", "index.json"] + sorted(
        str(p.relative_to(src)) for p in (src / "blobs" / "sha256").iterdir())
    out.write_bytes(tar_bytes([(n, (src / n).read_bytes()) for n in names]))
    return out


def member_offsets(path: Path, name: str) -> tuple[int, int, int]:
    """(header offset, data offset, size) of a member of a tar file."""
    with tarfile.open(path) as tf:
        m = tf.getmember(name)
        return m.offset, m.offset_data, m.size


def cut(path: Path, at: int, out: Path) -> Path:
    """Copy the first ``at`` bytes of ``path`` to ``out``."""
    out.write_bytes(path.read_bytes()[:at])
    return out


# ---- sanity: the builders make loadable images --------------------------------------------------

def test_builders_make_valid_images(tmp_path, capsys):
    """The unaltered docker-archive, OCI layout and OCI archive load, so each refusal below is the defect's."""
    st = tmp_path / "store"
    ok = docker_archive(tmp_path / "ok.tar", [DockerImage.make("sanity-docker", nlayers=2)])
    assert run_cli(capsys, ["--store", str(st), "load", str(ok)])[0] == 0
    layout = oci_layout(tmp_path / "layout", OciImage.make("sanity-oci", gzipped=True))
    rc, out, err = run_cli(capsys, ["--store", str(st), "load", str(layout)])
    assert rc == 0, err
    assert "Loaded image: bad/sanity-oci:v1" in out
    arch = tar_dir(oci_layout(tmp_path / "layout2", OciImage.make("sanity-ociarch")), tmp_path / "oci.tar")
    assert run_cli(capsys, ["--store", str(st), "load", str(arch)])[0] == 0
    assert {r["repository"] for r in json.loads(run_cli(capsys, ["--store", str(st), "images",
                                                                  "--format", "json"])[1])} == {
        "bad/sanity-docker", "bad/sanity-oci", "bad/sanity-ociarch"}


def test_archive_of_two_images_sharing_a_layer(tmp_path, capsys):
    """Several images in one archive are verified together and a layer they share is stored once."""
    base = DockerImage.make("shared-base")
    top = DockerImage.make("shared-top")
    top.layers = base.layers + top.layers
    top.config = config_for(["sha256:" + sha(la) for la in top.layers], "shared-top")
    top.config_name = sha(top.config) + ".json"
    top.layer_names = base.layer_names + top.layer_names
    archive = docker_archive(tmp_path / "two.tar", [base, top])
    st = tmp_path / "store"
    rc, out, err = run_cli(capsys, ["--store", str(st), "load", str(archive)])
    assert rc == 0, err
    assert out.splitlines() == ["Loaded image: bad/shared-base:v1", "Loaded image: bad/shared-top:v1"]
    layer_blobs = [p for p in (st / "blobs" / "sha256").iterdir() if p.name in {sha(la) for la in top.layers}]
    assert len(layer_blobs) == 2
    assert list((st / "layerkit" / "tmp").iterdir()) == []


# ---- truncated archives ------------------------------------------------------------------------

def test_truncated_in_layer_data(store, work, capsys):
    """An archive cut in the middle of a layer's data."""
    img = DockerImage.make("trunc-data", size=40_000)
    full = docker_archive(work / "full.tar", [img])
    _, data, size = member_offsets(full, img.layer_names[0])
    bad = cut(full, data + size // 2, work / "trunc-data.tar")
    line = check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])
    assert "truncated" in line.replace(str(bad), "")


@pytest.mark.parametrize("member", ["layer", "manifest.json"])
def test_truncated_in_header(store, work, capsys, member):
    """An archive cut in the middle of a member's 512-byte header (tarfile alone takes that for the end)."""
    img = DockerImage.make(f"trunc-header-{member}", size=3000)
    full = docker_archive(work / "full.tar", [img])
    name = img.layer_names[0] if member == "layer" else "manifest.json"
    header, data, _ = member_offsets(full, name)
    # PAX format: the member's own ustar header is the last block before its data
    bad = cut(full, data - 512 + 200, work / f"trunc-header-{member}.tar")
    assert header < data - 512 + 200 < data
    line = check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])
    assert "truncated" in line.replace(str(bad), "")


def test_corrupt_header_after_first_member(store, work, capsys):
    """A member header whose checksum is wrong (tarfile alone would take it for the end of the archive)."""
    img = DockerImage.make("corrupt-header", size=1000)
    full = docker_archive(work / "full.tar", [img])
    header, data, _ = member_offsets(full, img.layer_names[0])
    raw = bytearray(full.read_bytes())
    raw[data - 512 + 10] ^= 0x55  # a byte of the member's name: the checksum no longer matches
    bad = work / "corrupt.tar"
    bad.write_bytes(bytes(raw))
    line = check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])
    assert f"byte {data - 512}" in line


def test_truncated_gzip_archive(store, work, capsys):
    """A gzip-compressed ``docker save`` archive that ends early (streamed, never expanded to disk)."""
    img = DockerImage.make("trunc-gzip", size=20_000)
    raw = docker_archive(work / "full.tar", [img]).read_bytes()
    packed = gzip.compress(raw, mtime=0)
    bad = work / "trunc.tar.gz"
    bad.write_bytes(packed[: len(packed) // 2])
    check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])


def test_truncated_oci_archive(store, work, capsys):
    """An OCI archive cut in the middle of its layer blob."""
    img = OciImage.make("trunc-oci", gzipped=True)
    full = tar_dir(oci_layout(work / "layout", img), work / "full.tar")
    _, data, size = member_offsets(full, "blobs/sha256/" + img.layer_digest.split(":")[1])
    bad = cut(full, data + size // 2, work / "trunc-oci.tar")
    line = check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])
    assert "truncated" in line.replace(str(bad), "")


@pytest.mark.parametrize("gzipped", [False, True], ids=["tar", "gzip"])
def test_truncated_layer_blob_in_layout(store, work, capsys, gzipped):
    """An OCI layout whose layer blob file was cut short (its name still claims the full digest)."""
    img = OciImage.make(f"trunc-layout-blob-{gzipped}", gzipped=gzipped)
    # cut inside the tar's second header (a cut in the zero padding at the end would still be a
    # valid tar, refused by its digest instead)
    short = img.layer[: min(700, len(img.layer) // 2)]
    layout = oci_layout(work / "layout", img, blobs={img.layer_digest: short})
    check_load_refused(capsys, store, layout, errors.InvalidArchive, [img.layer_digest])


def test_not_an_archive(store, work, capsys):
    """A regular file that is not a tar at all."""
    bad = work / "notes.txt"
    bad.write_text("this is not an image archive\n" * 40)
    check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])


def test_empty_directory(store, work, capsys):
    """A directory that is neither an OCI layout nor an extracted docker-archive."""
    bad = work / "empty"
    bad.mkdir()
    check_load_refused(capsys, store, bad, errors.InvalidArchive, [str(bad)])


# ---- layers whose bytes do not match their digest ---------------------------------------------

def test_docker_archive_layer_differs_from_diff_id(store, work, capsys):
    """A docker-archive whose layer.tar is not the tar the config's diff_id names."""
    img = DockerImage.make("diffid-mismatch")
    name = img.layer_names[0]
    img.layer_members[name] = tiny_layer("diffid-mismatch-other")
    bad = docker_archive(work / "bad.tar", [img])
    line = check_load_refused(capsys, store, bad, errors.DigestMismatch, [name, "sha256:" + sha(img.layers[0])])
    assert "sha256:" + sha(img.layer_members[name]) in line


def test_docker_archive_config_differs_from_its_name(store, work, capsys):
    """A config member ``HEX.json`` whose bytes do not hash to HEX (the image ID)."""
    img = DockerImage.make("config-mismatch")
    img.config = img.config.replace(b'"sh"', b'"ash"')
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.DigestMismatch, [img.config_name])


@pytest.mark.parametrize("gzipped", [False, True], ids=["tar", "gzip"])
def test_oci_layout_corrupt_layer_blob(store, work, capsys, gzipped):
    """An OCI layout whose layer blob was altered in place (same file name, other bytes)."""
    img = OciImage.make(f"corrupt-blob-{gzipped}", gzipped=gzipped)
    corrupt = bytearray(img.layer)
    corrupt[len(corrupt) // 2] ^= 0xFF
    layout = oci_layout(work / "layout", img, blobs={img.layer_digest: bytes(corrupt)})
    check_load_refused(capsys, store, layout, DIGEST_OR_ARCHIVE[gzipped], [img.layer_digest])


# a flipped byte in a gzip stream is caught by gzip's own CRC before the blob digest is compared
DIGEST_OR_ARCHIVE = {False: errors.DigestMismatch, True: errors.InvalidArchive}


def test_oci_archive_corrupt_layer_blob(store, work, capsys):
    """The same corruption inside an OCI archive (a tar member named by a digest it does not have)."""
    img = OciImage.make("corrupt-blob-archive")
    corrupt = img.layer.replace(b"made for", b"MADE FOR")
    arch = tar_dir(oci_layout(work / "layout", img, blobs={img.layer_digest: corrupt}), work / "bad.tar")
    check_load_refused(capsys, store, arch, errors.DigestMismatch, [img.layer_digest])


def test_second_image_bad_leaves_first_unloaded(store, work, capsys):
    """An archive of two images whose second is corrupt loads neither: a load is all or nothing."""
    good = DockerImage.make("pair-good")
    bad_img = DockerImage.make("pair-bad")
    bad_img.layer_members[bad_img.layer_names[0]] = tiny_layer("pair-bad-other")
    bad = docker_archive(work / "pair.tar", [good, bad_img])
    check_load_refused(capsys, store, bad, errors.DigestMismatch, [bad_img.layer_names[0]])


def test_oci_layout_second_image_bad(store, work, capsys):
    """An OCI layout of two images whose second layer blob is corrupt records neither image."""
    good = OciImage.make("layout-pair-good")
    bad_img = OciImage.make("layout-pair-bad")
    # same length: a blob longer than its descriptor says is refused before it is read (its own test)
    corrupt = bad_img.layer.replace(b"made for", b"MADE FOR")
    layout = oci_layout(work / "layout", bad_img, blobs={bad_img.layer_digest: corrupt})
    gm = json.dumps(good.manifest_doc).encode()
    for data in (gm, good.config, good.layer):
        (layout / "blobs" / "sha256" / sha(data)).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].insert(0, {"mediaType": OCI_MANIFEST, "digest": "sha256:" + sha(gm), "size": len(gm),
                                  "annotations": {REF_NAME: "docker.io/bad/layout-pair-good:v1"}})
    (layout / "index.json").write_text(json.dumps(index))
    check_load_refused(capsys, store, layout, errors.DigestMismatch, [bad_img.layer_digest])


# ---- manifests and configs that are not JSON or lack fields ------------------------------------

def test_docker_manifest_not_json(store, work, capsys):
    """manifest.json that is not JSON."""
    bad = docker_archive(work / "bad.tar", [DockerImage.make("manifest-not-json")], manifest=b"[{'Config': ")
    check_load_refused(capsys, store, bad, errors.InvalidManifest, ["manifest.json", "JSON"])


def test_docker_config_not_json(store, work, capsys):
    """A config member (named by its own hash, so the digest check passes) that is not JSON."""
    img = DockerImage.make("config-not-json")
    img.config = b"{not json at all"
    img.config_name = sha(img.config) + ".json"
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, [img.config_name, "JSON"])


def test_docker_manifest_lacks_layers(store, work, capsys):
    """A manifest.json entry without ``Layers``."""
    img = DockerImage.make("manifest-no-layers")
    entry = img.manifest_entry()
    del entry["Layers"]
    bad = docker_archive(work / "bad.tar", [img], manifest=[entry])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, ["manifest.json", "Layers"])


def test_docker_manifest_not_a_list(store, work, capsys):
    """A manifest.json that is JSON but an object, not the list Docker writes."""
    bad = docker_archive(work / "bad.tar", [DockerImage.make("manifest-object")], manifest={"Config": "x"})
    check_load_refused(capsys, store, bad, errors.InvalidManifest, ["manifest.json"])


def test_docker_config_lacks_diff_ids(store, work, capsys):
    """A config without ``rootfs.diff_ids``."""
    img = DockerImage.make("config-no-rootfs")
    cfg = json.loads(img.config)
    del cfg["rootfs"]
    img.config = json.dumps(cfg).encode()
    img.config_name = sha(img.config) + ".json"
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, [img.config_name, "rootfs.diff_ids"])


def test_docker_config_layer_count_differs(store, work, capsys):
    """A config listing two diff_ids for a manifest entry with one layer."""
    img = DockerImage.make("config-count")
    cfg = json.loads(img.config)
    cfg["rootfs"]["diff_ids"].append("sha256:" + "0" * 64)
    img.config = json.dumps(cfg).encode()
    img.config_name = sha(img.config) + ".json"
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, [img.config_name])


@pytest.mark.parametrize("field,value", [("created", 5), ("created", "yesterday"), ("history", 5),
                                         ("history", [{"created_by": 7}]), ("config", "sh")])
def test_docker_config_field_wrong_type(store, work, capsys, field, value):
    """A config field of the wrong type, which would otherwise be stored and break ``images`` later."""
    img = DockerImage.make(f"config-type-{field}-{type(value).__name__}")
    cfg = json.loads(img.config)
    cfg[field] = value
    img.config = json.dumps(cfg).encode()
    img.config_name = sha(img.config) + ".json"
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, [img.config_name, field])


def test_docker_repo_tags_not_a_list(store, work, capsys):
    """``RepoTags`` that is a string instead of a list of strings."""
    img = DockerImage.make("repotags-string")
    entry = img.manifest_entry()
    entry["RepoTags"] = "bad/repotags-string:v1"
    bad = docker_archive(work / "bad.tar", [img], manifest=[entry])
    check_load_refused(capsys, store, bad, errors.InvalidManifest, ["manifest.json", "RepoTags"])


def test_oci_index_not_json(store, work, capsys):
    """An OCI layout whose index.json is not JSON."""
    layout = oci_layout(work / "layout", OciImage.make("index-not-json"), index=b"{\"manifests\": [")
    check_load_refused(capsys, store, layout, errors.InvalidManifest, ["index.json", "JSON"])


def test_oci_index_lacks_manifests(store, work, capsys):
    """An index.json without ``manifests``."""
    layout = oci_layout(work / "layout", OciImage.make("index-no-manifests"), index={"schemaVersion": 2})
    check_load_refused(capsys, store, layout, errors.InvalidManifest, ["index.json", "manifests"])


def test_oci_manifest_not_json(store, work, capsys):
    """A manifest blob (named by its own digest) that is not JSON."""
    junk = b"<html>not a manifest</html>"
    layout = oci_layout(work / "layout", OciImage.make("manifest-blob-not-json"), manifest=junk)
    check_load_refused(capsys, store, layout, errors.InvalidManifest, ["sha256:" + sha(junk), "JSON"])


def test_oci_config_not_json(store, work, capsys):
    """A config blob (named by its own digest) that is not JSON."""
    img = OciImage.make("config-blob-not-json")
    img.config = b"\x00\x01 binary, not json"
    img.manifest_doc["config"]["digest"] = "sha256:" + sha(img.config)
    img.manifest_doc["config"]["size"] = len(img.config)
    layout = oci_layout(work / "layout", img)
    check_load_refused(capsys, store, layout, errors.InvalidManifest, ["JSON"])


def test_oci_manifest_lacks_layers(store, work, capsys):
    """A manifest without ``layers``."""
    img = OciImage.make("manifest-blob-no-layers")
    del img.manifest_doc["layers"]
    layout = oci_layout(work / "layout", img)
    mdigest = "sha256:" + sha(json.dumps(img.manifest_doc).encode())
    check_load_refused(capsys, store, layout, errors.InvalidManifest, [mdigest, "layers"])


def test_oci_config_lacks_diff_ids(store, work, capsys):
    """A config blob without ``rootfs``."""
    img = OciImage.make("config-blob-no-rootfs")
    cfg = json.loads(img.config)
    del cfg["rootfs"]
    img.config = json.dumps(cfg).encode()
    img.manifest_doc["config"]["digest"] = "sha256:" + sha(img.config)
    img.manifest_doc["config"]["size"] = len(img.config)
    layout = oci_layout(work / "layout", img)
    check_load_refused(capsys, store, layout, errors.InvalidManifest, ["rootfs.diff_ids"])


# ---- missing blobs and members -----------------------------------------------------------------

def test_oci_missing_layer_blob(store, work, capsys):
    """An OCI layout whose manifest names a layer blob that is not there."""
    img = OciImage.make("missing-layer-blob")
    layout = oci_layout(work / "layout", img, skip={img.layer_digest})
    check_load_refused(capsys, store, layout, errors.BlobNotFound, [img.layer_digest.split(":")[1]])


def test_oci_missing_config_blob(store, work, capsys):
    """An OCI layout whose config blob is not there."""
    img = OciImage.make("missing-config-blob")
    cdigest = img.manifest_doc["config"]["digest"]
    layout = oci_layout(work / "layout", img, skip={cdigest})
    check_load_refused(capsys, store, layout, errors.BlobNotFound, [cdigest.split(":")[1]])


def test_oci_archive_missing_manifest_blob(store, work, capsys):
    """An OCI archive whose index.json names a manifest the archive lacks."""
    img = OciImage.make("missing-manifest-blob")
    mdigest = "sha256:" + sha(json.dumps(img.manifest_doc).encode())
    arch = tar_dir(oci_layout(work / "layout", img, skip={mdigest}), work / "bad.tar")
    check_load_refused(capsys, store, arch, errors.BlobNotFound, [mdigest.split(":")[1]])


def test_docker_missing_layer_member(store, work, capsys):
    """A docker-archive whose manifest.json names a layer.tar the archive lacks."""
    img = DockerImage.make("missing-layer-member")
    bad = docker_archive(work / "bad.tar", [img], skip={img.layer_names[0]})
    check_load_refused(capsys, store, bad, errors.BlobNotFound, [img.layer_names[0]])


def test_docker_missing_config_member(store, work, capsys):
    """A docker-archive whose manifest.json names a config the archive lacks."""
    img = DockerImage.make("missing-config-member")
    bad = docker_archive(work / "bad.tar", [img], skip={img.config_name})
    check_load_refused(capsys, store, bad, errors.BlobNotFound, [img.config_name])


# ---- unsafe member names -----------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["/etc/evil", "../evil", "blobs/../../evil"])
def test_archive_member_escapes(store, work, capsys, evil):
    """An archive member with an absolute path or ``..`` (refused before anything is read)."""
    img = DockerImage.make("evil-member-" + sha(evil.encode())[:8])
    bad = docker_archive(work / "bad.tar", [img], extra=[(evil, b"pwned\n")])
    line = check_load_refused(capsys, store, bad, errors.InvalidArchive, [evil])
    assert "absolute path or '..'" in line


@pytest.mark.parametrize("evil", ["/etc/passwd", "../../etc/passwd"])
def test_manifest_names_escaping_layer(store, work, capsys, evil):
    """A manifest.json whose layer path is absolute or climbs out of the archive."""
    img = DockerImage.make("evil-layer-name-" + str(len(evil)))
    entry = img.manifest_entry()
    entry["Layers"] = [evil]
    bad = docker_archive(work / "bad.tar", [img], manifest=[entry])
    check_load_refused(capsys, store, bad, errors.InvalidArchive, [evil])


def test_docker_archive_directory_member_escapes(store, work, capsys):
    """The same manifest in an extracted docker-archive (a directory) cannot read outside it."""
    img = DockerImage.make("evil-dir-layer")
    entry = img.manifest_entry()
    entry["Layers"] = ["../outside/layer.tar"]
    root = work / "extracted"
    root.mkdir()
    (work / "outside").mkdir()
    (work / "outside" / "layer.tar").write_bytes(img.layers[0])
    (root / img.config_name).write_bytes(img.config)
    (root / "manifest.json").write_text(json.dumps([entry]))
    check_load_refused(capsys, store, root, errors.InvalidArchive, ["../outside/layer.tar"])


def test_layer_entry_climbs_out(store, work, capsys):
    """A layer tar whose own entry is ``../escape`` (applying it would write outside the rootfs)."""
    layer = tar_bytes([("etc", None), ("../escape", b"x\n")])
    img = DockerImage.make("layer-dotdot")
    diff_id = "sha256:" + sha(layer)
    img.config = config_for([diff_id], "layer-dotdot")
    img.config_name = sha(img.config) + ".json"
    img.layer_names = [f"{sha(layer)}/layer.tar"]
    img.layer_members = {img.layer_names[0]: layer}
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, LayerFormatError, ["../escape", img.layer_names[0]])


# ---- media types -------------------------------------------------------------------------------

def test_unknown_layer_media_type(store, work, capsys):
    """A manifest whose layer has a media type layerkit does not know."""
    img = OciImage.make("unknown-layer-type")
    img.manifest_doc["layers"][0]["mediaType"] = "application/vnd.example.layer.v1.tar+lz4"
    layout = oci_layout(work / "layout", img)
    check_load_refused(capsys, store, layout, errors.UnsupportedMediaType,
                       ["application/vnd.example.layer.v1.tar+lz4", img.layer_digest, str(layout)])


def test_unknown_manifest_media_type(store, work, capsys):
    """An index.json entry whose media type is neither a manifest nor an index."""
    layout = oci_layout(work / "layout", OciImage.make("unknown-manifest-type"),
                        manifest_type="application/vnd.example.manifest+json")
    check_load_refused(capsys, store, layout, errors.UnsupportedMediaType,
                       ["application/vnd.example.manifest+json"])


def test_unknown_config_media_type(store, work, capsys):
    """A manifest whose config descriptor has a foreign media type (a Helm chart, say)."""
    img = OciImage.make("unknown-config-type")
    img.manifest_doc["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    layout = oci_layout(work / "layout", img)
    check_load_refused(capsys, store, layout, errors.UnsupportedMediaType,
                       ["application/vnd.cncf.helm.config.v1+json"])


# ---- invalid references ------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["Bad/Upper:v1", "bad name:v1", "busybox:" + "t" * 129, "bad::tag", 42])
def test_invalid_repo_tag_in_archive(store, work, capsys, tag):
    """A docker-archive whose RepoTags holds something that is not a Docker reference."""
    img = DockerImage.make("bad-repotag-" + str(tag)[:12].replace(" ", "-").replace(":", "-").lower())
    img.tag = tag
    bad = docker_archive(work / "bad.tar", [img])
    check_load_refused(capsys, store, bad, errors.InvalidReference, [str(tag)])


def test_history_of_invalid_reference(store, capsys):
    """``history Busybox:latest``: a reference with upper case is invalid, as Docker says."""
    line = check_refused(capsys, store, ["history", "Busybox:latest"],
                         lambda st: st.image("Busybox:latest"), errors.InvalidReference, ["Busybox"])
    assert "lowercase" in line


@pytest.mark.parametrize("target", ["UPPER", "busybox:bad tag", "busybox@sha256:abc", ":v1"])
def test_tag_invalid_reference(store, capsys, target):
    """``tag busybox TARGET`` with an invalid TARGET leaves index.json as it was."""
    check_refused(capsys, store, ["tag", "busybox", target], lambda st: st.tag("busybox", target),
                  errors.InvalidReference, [target])


def test_oci_layout_tag_not_present(store, work, capsys):
    """``load DIR:TAG`` naming a tag the layout does not hold."""
    layout = oci_layout(work / "layout", OciImage.make("layout-tag-missing"))
    check_load_refused(capsys, store, f"{layout}:nosuchtag", errors.ImageNotFound, ["nosuchtag"])


# ---- paths that do not exist -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["missing.tar", "no/such/dir/image.tar"])
def test_path_does_not_exist(store, work, capsys, name):
    """``load`` of a path that is not there."""
    path = work / name
    check_load_refused(capsys, store, path, errors.NotFound, [str(path)])


def test_history_of_unknown_image(store, capsys):
    """A well-formed reference to an image the store does not hold."""
    check_refused(capsys, store, ["history", "nosuch/image:v9"], lambda st: st.image("nosuch/image:v9"),
                  errors.ImageNotFound, ["nosuch/image:v9"])


def test_store_still_works(store, capsys):
    """After all the refusals the store still shows busybox."""
    rc, out, _ = run_cli(capsys, ["--store", str(store), "images", "--format", "json"])
    assert rc == 0
    assert [r["repository"] for r in json.loads(out)] == ["busybox"]
